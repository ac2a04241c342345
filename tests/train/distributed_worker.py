"""One `rewardlab.train.loop.train` run, started by the multi-process tests under ``torchrun``.

``python distributed_worker.py OPTIONS_JSON DUMP_DIR``: OPTIONS_JSON holds `TrainConfig` fields plus
``stop_after_step`` (end the run with exit status 3 right after that step, as a kill would). After
every optimizer step each process appends a digest of its trainable parameters to
``DUMP_DIR/rank<R>.json``, so a test can check the processes hold identical weights at every step.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from rewardlab.models.reward_model import RewardModel
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import train

STOPPED = 3


def parameter_digest(model: RewardModel) -> str:
    """SHA-256 over the names and exact bytes of the trainable parameters (gathered whole under FSDP)."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        if parameter.requires_grad:
            tensor = parameter.full_tensor() if hasattr(parameter, "full_tensor") else parameter  # FSDP2: a DTensor
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> int:
    options = json.loads(sys.argv[1])
    dump = Path(sys.argv[2])
    dump.mkdir(parents=True, exist_ok=True)
    stop_after = options.pop("stop_after_step", None)
    rank = int(os.environ.get("RANK", "0"))
    records: list[dict] = []

    def on_step(step: int, logs: dict[str, float], model: RewardModel) -> None:
        records.append({"step": step, "digest": parameter_digest(model), "loss": logs["loss"]})
        (dump / f"rank{rank}.json").write_text(json.dumps(records), encoding="utf-8")
        if step == stop_after:
            sys.exit(STOPPED)

    config = TrainConfig(**options)
    train(config, on_step=on_step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
