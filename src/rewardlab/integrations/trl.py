"""A rewardlab reward model as a TRL reward function.

TRL's online trainers (``GRPOTrainer(reward_funcs=…)``, ``RLOOTrainer``) call a reward function as
``func(prompts=…, completions=…, **columns)`` and expect one float per completion. `RewardFunction`
is that callable for any model rewardlab can score with: a saved rewardlab reward model (scored by
`RewardScorer` with the model's own chat template, batched and packed), a sequence-classification
checkpoint (`RewardFunction.from_pretrained`), or any scorer with ``score_conversations(messages,
replies)``, such as an ensemble proxy of `rewardlab bon`
(``RewardFunction(ProxyScorer.load("bon-output/proxies/ensemble_k_3"))``).

Both TRL dataset formats are accepted:

* conversational: ``prompts[i]`` is a list of ``{"role", "content"}`` messages and ``completions[i]``
  a list whose assistant messages are the reply (their contents joined);
* plain text: ``prompts[i]`` is a string, taken as the user's message, and ``completions[i]`` the reply.

    from trl import GRPOConfig, GRPOTrainer
    from rewardlab.integrations.trl import RewardFunction

    reward = RewardFunction.from_pretrained("runs/grm-smollm2")       # any saved rewardlab model
    trainer = GRPOTrainer(
        model="HuggingFaceTB/SmolLM2-135M-Instruct",
        reward_funcs=[reward],
        args=GRPOConfig(output_dir="grpo-out", max_completion_length=64),
        train_dataset=dataset,                                          # a "prompt" column
    )
    trainer.train()

The same model serves OpenRLHF's remote reward protocol (``--remote_rm_url``) through ``rewardlab serve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rewardlab.data.pair import Message
from rewardlab.errors import ConfigError

__all__ = ["RewardFunction", "completion_text", "prompt_messages", "trainer_device"]


def trainer_device() -> str:
    """The device of this process under accelerate (the one TRL's trainer runs on): ``cuda:N``, ``mps`` or ``cpu``."""
    try:
        from accelerate import PartialState

        return str(PartialState().device)
    except Exception:  # accelerate not initialised in a usable way: the scorers' own default
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def prompt_messages(prompt: Any, index: int = 0) -> tuple[Message, ...]:
    """The chat messages of one TRL prompt: a message list as it is, a string as the user's message."""
    if isinstance(prompt, str):
        return ({"role": "user", "content": prompt},)
    if isinstance(prompt, Sequence) and prompt and all(isinstance(m, Mapping) for m in prompt):
        messages = []
        for number, message in enumerate(prompt):
            role, content = message.get("role"), message.get("content")
            if not isinstance(role, str) or not isinstance(content, str):
                raise ConfigError(f"prompt {index}, message {number}: needs string 'role' and 'content' fields")
            messages.append({"role": role, "content": content})
        return tuple(messages)
    raise ConfigError(f"prompt {index}: expected a string or a list of chat messages, got {type(prompt).__name__}")


def completion_text(completion: Any, index: int = 0) -> str:
    """The reply of one TRL completion: a string as it is, a message list's assistant contents joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        parts = [m.get("content") for m in completion if m.get("role") == "assistant"]
        if not parts or not all(isinstance(p, str) for p in parts):
            raise ConfigError(f"completion {index}: no assistant message with string content")
        return "".join(parts)
    raise ConfigError(f"completion {index}: expected a string or a list of chat messages, "
                      f"got {type(completion).__name__}")


class RewardFunction:
    """Scores TRL prompts and completions with a rewardlab scorer; ``normalize`` (mean, std) standardizes.

    ``scorer`` is a `RewardScorer`, anything with ``score_conversations(messages, replies)`` (a
    `rewardlab.overopt` proxy), or a `rewardlab.evaluate` scorer (``score(messages, replies)``). TRL
    names the function after ``name`` in its logs (``rewards/NAME/mean``).
    """

    def __init__(self, scorer: Any, *, name: str = "rewardlab", normalize: tuple[float, float] | None = None) -> None:
        if not callable(getattr(scorer, "score_conversations", None)) and not callable(getattr(scorer, "score", None)):
            raise ConfigError(f"{type(scorer).__name__} cannot score: pass a RewardScorer or an object with "
                              "score_conversations() or score()")
        if normalize is not None and not (len(normalize) == 2 and float(normalize[1]) > 0):
            raise ConfigError(f"normalize must be (mean, std) with std > 0, got {normalize!r}")
        self.scorer = scorer
        self.__name__ = name
        self.normalize = None if normalize is None else (float(normalize[0]), float(normalize[1]))
        self.calls = 0

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | None = None, batch_size: int = 16,
                        name: str | None = None, normalize: tuple[float, float] | None = None,
                        frozen_cache: Any = None) -> "RewardFunction":
        """Load a rewardlab reward model (scored by its `RewardScorer`) or a sequence-classification
        checkpoint on ``device`` (default: the trainer's device under accelerate)."""
        from rewardlab.evaluate.scorers import RewardModelScorer, load_scorer

        label = name or Path(path).name
        scorer = load_scorer(str(path), device=device or trainer_device(), batch_size=batch_size, name=label,
                             frozen_cache=frozen_cache)
        if isinstance(scorer, RewardModelScorer):
            scorer = scorer.scorer
        return cls(scorer, name=label, normalize=normalize)

    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """The (normalized) rewards of ``completions[i]`` answering ``prompts[i]``, in either TRL format."""
        if len(prompts) != len(completions):
            raise ConfigError(f"{len(prompts)} prompts but {len(completions)} completions")
        messages = [prompt_messages(p, i) for i, p in enumerate(prompts)]
        replies = [completion_text(c, i) for i, c in enumerate(completions)]
        if callable(getattr(self.scorer, "score_conversations", None)):
            values = self.scorer.score_conversations(messages, replies)
        else:
            values = self.scorer.score(messages, replies)
        self.calls += 1
        if self.normalize is not None:
            mean, std = self.normalize
            return [(float(v) - mean) / std for v in values]
        return [float(v) for v in values]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        return self.score(prompts, completions)

    def calibrate(self, prompts: Sequence[Any], completions: Sequence[Any]) -> tuple[float, float]:
        """Set ``normalize`` to the mean and standard deviation of the raw rewards of these completions."""
        self.normalize = None
        values = self.score(prompts, completions)
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
        self.normalize = (mean, std if std > 0 else 1.0)
        return self.normalize
