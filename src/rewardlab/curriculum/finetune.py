"""Policy fine-tuning on kept episodes: the token mask, and a small LoRA SFT loop (nothing hidden).

Loss is taken only on tokens the policy generated: the assistant replies it wrote. The preamble, the
scripted acknowledgement and demonstration, the task, the ``<cot>`` opening the harness prefills, every
``<stdout>``/``<stderr>`` turn and the chat template's own tokens are context only. The end-of-turn token
after the final answer is a policy token when the reply ended there (``finish_reasons[-1] == "eos"``),
so the policy learns to stop; after a ``</bash>`` command the template closes the turn, not the policy.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from rewardlab.data.pair import Message
from rewardlab.data.render import with_special_tokens
from rewardlab.envs.protocol import COT_OPEN, build_messages
from rewardlab.errors import ConfigError, RewardlabError
from rewardlab.files import write_json_atomic

IGNORE_INDEX = -100


class EpisodeMaskError(RewardlabError, ValueError):
    """An episode transcript whose replies cannot be located in its rendered text."""


@dataclass
class TrainingExample:
    """One episode as model inputs: ``labels`` equal ``input_ids`` on policy tokens and ``IGNORE_INDEX`` elsewhere."""

    id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def policy_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def opening_length(uses_tools: bool) -> int:
    """How many transcript messages the harness writes before the policy's first reply."""
    return len(build_messages("", uses_tools)) - 1


def generated_spans(messages: Sequence[Message], uses_tools: bool) -> list[tuple[int, int]]:
    """``(message index, first generated character)`` for every reply the policy wrote.

    The first reply continues the harness's ``<cot>`` prefill, so its first ``len("<cot>")`` characters
    are not the policy's.
    """
    first = opening_length(uses_tools)
    spans = []
    for index in range(first, len(messages)):
        if messages[index]["role"] != "assistant":
            continue
        skip = len(COT_OPEN) if index == first and messages[index]["content"].startswith(COT_OPEN) else 0
        spans.append((index, skip))
    return spans


def episode_example(tokenizer: Any, record: dict[str, Any], *, uses_tools: bool) -> TrainingExample:
    """Tokenize one episode record (its ``messages``) with the chat template and mask all but policy tokens."""
    messages: list[Message] = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if not messages or messages[-1]["role"] != "assistant":
        raise EpisodeMaskError(f"episode {record.get('id')}: the transcript does not end with the policy's reply")
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    char_spans: list[tuple[int, int]] = []
    cursor = 0
    located: dict[int, tuple[int, int]] = {}
    for index, message in enumerate(messages):
        position = text.find(message["content"], cursor) if message["content"] else cursor
        if position < 0:
            raise EpisodeMaskError(f"episode {record.get('id')}: message {index} is not verbatim in the chat "
                                   "template's text, so its tokens cannot be masked")
        located[index] = (position, position + len(message["content"]))
        cursor = position + len(message["content"])
    for index, skip in generated_spans(messages, uses_tools):
        start, end = located[index]
        char_spans.append((start + skip, end))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
    full = with_special_tokens(tokenizer, ids, whole=False)
    lead = len(full) - len(ids)
    labels = [IGNORE_INDEX] * lead
    for token, (start, end) in zip(ids, offsets):
        inside = end > start and any(low <= start and end <= high for low, high in char_spans)
        labels.append(token if inside else IGNORE_INDEX)
    reasons = record.get("finish_reasons") or []
    if reasons and reasons[-1] == "eos" and char_spans:
        final_end = char_spans[-1][1]
        end_of_turn = _end_of_turn_ids(tokenizer)
        for position, (token, (start, _)) in enumerate(zip(ids, offsets)):
            if start >= final_end:
                if token in end_of_turn:
                    labels[lead + position] = token
                break
    return TrainingExample(str(record.get("id")), full, labels)


def _end_of_turn_ids(tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id} if isinstance(tokenizer.eos_token_id, int) else set()
    for name in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"):
        token = tokenizer.convert_tokens_to_ids(name) if name in tokenizer.get_vocab() else None
        if isinstance(token, int):
            ids.add(token)
    return ids


@dataclass(frozen=True)
class FinetuneSettings:
    """The SFT step of expert iteration: LoRA on the attention and MLP projections, AdamW, constant LR."""

    lr: float = 5e-4
    epochs: float = 2.0
    batch_size: int = 4
    max_length: int = 2048
    lora_r: int = 16
    lora_alpha: int = 32
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1 or self.max_length < 16 or self.lora_r < 1:
            raise ConfigError(f"fine-tuning needs lr > 0, epochs > 0, batch_size >= 1, max_length >= 16 and "
                              f"lora_r >= 1 (got {self.lr}, {self.epochs}, {self.batch_size}, {self.max_length}, "
                              f"{self.lora_r})")


@dataclass
class FinetuneResult:
    """What one fine-tuning call did (``finetune.json`` next to the adapter)."""

    examples: int
    skipped_too_long: int
    policy_tokens: int
    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def attach_lora(model: Any, settings: FinetuneSettings, adapter: Path | None = None) -> Any:
    """``model`` with a trainable LoRA adapter: a new one, or the one saved in ``adapter``."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter is not None:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [target for target in settings.lora_targets if target in names]
    if not targets:
        raise ConfigError(f"none of the LoRA target modules {', '.join(settings.lora_targets)} exist in the policy")
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0, target_modules=targets,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def finetune(model: Any, tokenizer: Any, examples: list[TrainingExample], settings: FinetuneSettings, *,
             save_to: Path, progress: bool = True, desc: str = "fine-tune",
             echo: Callable[[str], None] = print) -> FinetuneResult:
    """Train ``model``'s LoRA adapter on ``examples`` (loss on policy tokens only) and save it to ``save_to``.

    The loss of a batch is the mean over its policy tokens. Examples longer than ``max_length`` are skipped
    and counted. Deterministic for a given seed and machine. The adapter is written to a temporary folder
    and renamed into place, so ``save_to`` only ever holds a complete adapter.
    """
    started = time.perf_counter()
    usable = [example for example in examples if len(example.input_ids) <= settings.max_length and example.policy_tokens]
    skipped = sum(1 for example in examples if len(example.input_ids) > settings.max_length)
    result = FinetuneResult(len(usable), skipped, sum(example.policy_tokens for example in usable), 0)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if usable:
        torch.manual_seed(settings.seed)
        order_rng = random.Random(settings.seed)
        steps_per_epoch = math.ceil(len(usable) / settings.batch_size)
        total_steps = max(1, round(steps_per_epoch * settings.epochs))
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
        model.train()
        schedule: list[TrainingExample] = []
        while len(schedule) < total_steps * settings.batch_size:
            epoch = list(usable)
            order_rng.shuffle(epoch)
            schedule.extend(epoch)
        bar = tqdm(total=total_steps, desc=desc, unit="step", disable=not progress, dynamic_ncols=True)
        for step in range(total_steps):
            batch = schedule[step * settings.batch_size:(step + 1) * settings.batch_size]
            width = max(len(example.input_ids) for example in batch)
            inputs = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, example in enumerate(batch):
                inputs[row, :len(example.input_ids)] = torch.tensor(example.input_ids)
                labels[row, :len(example.labels)] = torch.tensor(example.labels)
                mask[row, :len(example.input_ids)] = 1
            inputs, labels, mask = inputs.to(device), labels.to(device), mask.to(device)
            logits = model(input_ids=inputs, attention_mask=mask).logits[:, :-1].float()
            targets = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                     ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            optimizer.step()
            result.losses.append(round(float(loss.detach()), 6))
            bar.update(1)
            bar.set_postfix(loss=f"{result.losses[-1]:.3f}", refresh=False)
        bar.close()
        model.eval()
        result.steps = total_steps
    else:
        echo("fine-tune: no usable examples; the adapter is saved unchanged")
    result.seconds = round(time.perf_counter() - started, 2)
    save_adapter(model, save_to, extra={"finetune": result.to_json(), "settings": asdict(settings)})
    return result


def save_adapter(model: Any, folder: Path, *, extra: dict[str, Any]) -> None:
    """Save the PEFT adapter into ``folder`` atomically (temporary sibling folder, then rename)."""
    folder = Path(folder)
    temporary = folder.with_name(folder.name + ".partial")
    if temporary.exists():
        shutil.rmtree(temporary)
    model.save_pretrained(str(temporary))
    write_json_atomic(temporary / "finetune.json", extra)
    if folder.exists():
        shutil.rmtree(folder)
    temporary.rename(folder)


def read_finetune(folder: Path) -> dict[str, Any] | None:
    """The ``finetune.json`` saved with an adapter, or None if there is no complete adapter there."""
    path = Path(folder) / "finetune.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
