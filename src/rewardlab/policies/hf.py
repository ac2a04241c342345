"""Local transformers policy: a causal LM generating with its chat template.

The prompt is the tokenizer's chat template; a trailing assistant message is continued
(``continue_final_message``). Stop strings are honoured during generation and the text is cut
right after the first one. Generation is serialised with a lock, so one model can serve several
runner threads.

`HFPolicy.sample` draws many replies to one prompt for best-of-N studies: the prompt's prefill runs
once, its KV cache is repeated to one row per sample, and the rows are decoded together with this
module's own temperature/top-p sampler. Each sample ``j`` has its own random stream, seeded from
(settings.seed, prompt text, j) (`rewardlab.policies.base.sample_seed`), so a sample does not depend
on how the K samples were split into decoding batches or calls (up to float rounding of batched
matrix products). Rows stop at any of the model's EOS tokens or after ``max_new_tokens``; finished
rows are dropped from the batch as they accumulate.
"""

from __future__ import annotations

import copy
import inspect
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from rewardlab.data.pair import Message
from rewardlab.data.render import with_special_tokens
from rewardlab.policies.base import (
    PolicyError,
    SamplingSettings,
    check_sample_request,
    continuation_prefix,
    cut_at_stop,
    sample_seed,
)

POLICY_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Weight dtypes a local policy can run in (``auto``: bfloat16 on a GPU that supports it, else float32)."""
CPU_SAMPLE_MEMORY = 4 << 30
"""Bytes of KV cache one decoding batch of `HFPolicy.sample` may use on a CPU."""
GPU_SAMPLE_MEMORY_SHARE = 0.5
"""Share of the free accelerator memory one decoding batch of `HFPolicy.sample` may use."""


@dataclass
class SampledTokens:
    """Token ids of sampled continuations (EOS excluded), with each decoding step's logits when asked for."""

    tokens: list[list[int]]
    step_logits: list[torch.Tensor] | None = None
    """Per step, ``[rows, vocab]`` float32 logits the step's token was drawn from (NaN for finished rows)."""


class HFPolicy:
    """Generates with a local model (an alias such as ``smollm2-135m``, a hub id or a folder)."""

    def __init__(self, model_name: str, *, max_new_tokens: int = 512, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0, device: str | None = None,
                 sample_batch: int | None = None, dtype: str = "auto") -> None:
        from rewardlab.models.registry import load_backbone

        if max_new_tokens <= 0:
            raise PolicyError(f"max_new_tokens must be positive, got {max_new_tokens}")
        self.model_name = model_name
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_policy_dtype(dtype, self.device)
        self.model, self.tokenizer = load_backbone(model_name, dtype=self.dtype)
        self.model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        if sample_batch is not None and sample_batch < 1:
            raise PolicyError(f"sample_batch must be positive, got {sample_batch}")
        self.sample_batch = sample_batch
        """Most samples `sample` decodes at once (None: as many as fit `CPU_SAMPLE_MEMORY` / the free GPU share)."""
        self._lock = threading.Lock()
        self._calls = 0

    def for_episode(self, hints: Mapping[str, Any]) -> _SeededHF:
        """The same model with a sampling seed derived from the episode, so reruns are repeatable."""
        key = repr((self.seed, hints.get("env"), hints.get("seed"), hints.get("index"))).encode("utf-8")
        return _SeededHF(self, zlib.crc32(key))

    def prompt_text(self, messages: list[Message]) -> str:
        """The chat-template text the model continues."""
        if not self.tokenizer.chat_template:
            raise PolicyError(f"model {self.model_name!r} has no chat template; use an instruction-tuned model")
        continuing = bool(continuation_prefix(messages))
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not continuing, continue_final_message=continuing)

    def prompt_ids(self, text: str, max_new_tokens: int) -> list[int]:
        """The prompt's token ids (special tokens placed as everywhere else); refuses a context overflow."""
        ids = with_special_tokens(self.tokenizer, self.tokenizer(text, add_special_tokens=False)["input_ids"], whole=False)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and len(ids) + max_new_tokens > limit:
            raise PolicyError(f"prompt of {len(ids)} tokens plus {max_new_tokens} new tokens exceeds "
                              f"the context of {limit} tokens of {self.model_name!r}")
        return ids

    def generate(self, messages: list[Message], stop: list[str], *, seed: int | None = None) -> str:
        """The assistant message: any assistant opening plus the generated continuation, cut at ``stop``."""
        text = self.prompt_text(messages)
        input_ids = torch.tensor([self.prompt_ids(text, self.max_new_tokens)], device=self.device)
        sampling = self.temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens, "do_sample": sampling,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling:
            options.update(temperature=self.temperature, top_p=self.top_p)
        if stop:
            options.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        with self._lock, torch.no_grad():
            self._calls += 1
            torch.manual_seed(seed if seed is not None else self.seed + self._calls)
            output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                         **options)
        new_text = self.tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True)
        return continuation_prefix(messages) + cut_at_stop(new_text, stop)

    def sample(self, messages: list[Message], k: int, settings: SamplingSettings, *, start: int = 0) -> list[str]:
        """Samples ``start`` … ``start + k - 1`` of the prompt: any assistant opening plus each continuation."""
        sampled = self.sample_tokens(messages, k, settings, start=start)
        prefix = continuation_prefix(messages)
        return [prefix + self.tokenizer.decode(row, skip_special_tokens=True) for row in sampled.tokens]

    def sample_tokens(self, messages: list[Message], k: int, settings: SamplingSettings, *, start: int = 0,
                      keep_logits: bool = False) -> SampledTokens:
        """`sample` as token ids: one prefill of the prompt, then its KV cache shared by batches of rows."""
        check_sample_request(k, start)
        text = self.prompt_text(messages)
        ids = self.prompt_ids(text, settings.max_new_tokens)
        rows = self.sample_batch or self._rows_that_fit(len(ids) + settings.max_new_tokens)
        stop_ids = self.eos_ids()
        tokens: list[list[int]] = []
        step_logits: list[torch.Tensor] | None = [] if keep_logits else None
        with self._lock, torch.inference_mode():
            options = {"logits_to_keep": 1} if _accepts(self.model, "logits_to_keep") else {}
            prefill = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, **options)
            first_logits = prefill.logits[:, -1, :]
            starts = list(range(start, start + k, rows))
            for number, chunk_start in enumerate(starts):
                count = min(rows, start + k - chunk_start)
                uniforms = sample_uniforms(settings, text, chunk_start, count, device=self.device)
                cache = prefill.cache if number == len(starts) - 1 else copy.deepcopy(prefill.cache)
                chunk = decode_rows(self.model, cache, first_logits, uniforms, settings, stop_ids,
                                    keep_logits=keep_logits)
                tokens.extend(chunk.tokens)
                if step_logits is not None and chunk.step_logits is not None:
                    step_logits = _join_steps(step_logits, chunk.step_logits, len(tokens) - count)
        return SampledTokens(tokens, step_logits)

    def eos_ids(self) -> list[int]:
        """Every token id that ends a reply: the generation config's EOS ids and the tokenizer's."""
        found: list[int] = []
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for candidate in [*(configured if isinstance(configured, (list, tuple)) else [configured]),
                          self.tokenizer.eos_token_id]:
            if isinstance(candidate, int) and candidate not in found:
                found.append(candidate)
        return found

    def _rows_that_fit(self, sequence_tokens: int) -> int:
        """How many sample rows of ``sequence_tokens`` fit the KV-cache memory allowed for one batch."""
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = int(free * GPU_SAMPLE_MEMORY_SHARE)
        else:
            budget = CPU_SAMPLE_MEMORY
        return max(1, budget // max(1, sequence_tokens * kv_bytes_per_token(self.model)))


def resolve_policy_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype ``name`` (one of `POLICY_DTYPES` or ``auto``) means on ``device``."""
    if name == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if name not in POLICY_DTYPES:
        raise PolicyError(f"unknown policy dtype {name!r}; choose auto, {', '.join(POLICY_DTYPES)}")
    return POLICY_DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The `POLICY_DTYPES` name of ``dtype`` (``float32``, …)."""
    return str(dtype).removeprefix("torch.")


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of key/value cache one token of one sequence takes in ``model`` (a config-based estimate)."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(config, "num_attention_heads", 1) or 1
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    layers = getattr(config, "num_hidden_layers", 1)
    element = next(model.parameters()).element_size()
    return 2 * layers * kv_heads * head_dim * element


def sample_uniforms(settings: SamplingSettings, prompt: str, start: int, count: int,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """``[count, max_new_tokens]`` uniforms in [0, 1); row ``i`` is sample ``start + i``'s own stream."""
    rows = []
    for index in range(start, start + count):
        generator = torch.Generator().manual_seed(sample_seed(settings, prompt, index))
        rows.append(torch.rand(settings.max_new_tokens, generator=generator, dtype=torch.float64))
    return torch.stack(rows).to(device)


def pick_tokens(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row of ``logits``: argmax when ``temperature == 0``, else inverse-CDF sampling.

    The distribution is ``softmax(logits / temperature)`` restricted to the smallest set of most likely
    tokens whose probability reaches ``top_p``; row ``i`` takes the token where the cumulative
    probability first exceeds ``uniforms[i]`` of the total.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)
    order = None
    if top_p < 1:
        probabilities, order = probabilities.sort(dim=-1, descending=True)
        before = probabilities.cumsum(dim=-1) - probabilities
        probabilities = probabilities.masked_fill(before >= top_p, 0.0)
    cumulative = probabilities.double().cumsum(dim=-1)
    targets = (uniforms.double() * cumulative[:, -1]).unsqueeze(1)
    choice = torch.searchsorted(cumulative, targets, right=True).clamp_(max=logits.shape[-1] - 1)
    if order is not None:
        choice = order.gather(1, choice)
    return choice.squeeze(1)


def decode_rows(model: Any, cache: Any, first_logits: torch.Tensor, uniforms: torch.Tensor,
                settings: SamplingSettings, stop_ids: list[int], *, keep_logits: bool = False) -> SampledTokens:
    """Decode ``len(uniforms)`` continuations of one prefilled prompt (``cache`` holds its one row).

    ``first_logits`` ``[1, vocab]`` are the prompt's last-position logits. The cache is repeated to one
    row per sample (in place); rows that reached a stop id are removed from it once a quarter of the
    batch has finished, so late steps do not pay for finished rows.
    """
    rows, steps = uniforms.shape
    device = first_logits.device
    cache.batch_repeat_interleave(rows)
    logits = first_logits.expand(rows, -1)
    stops = torch.tensor(stop_ids, device=device, dtype=torch.long)
    generated = torch.zeros((rows, steps), dtype=torch.long, device=device)
    lengths = torch.full((rows,), steps, dtype=torch.long, device=device)
    batch_rows = torch.arange(rows, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    step_logits: list[torch.Tensor] | None = [] if keep_logits else None
    for step in range(steps):
        if step_logits is not None:
            kept = torch.full((rows, logits.shape[-1]), float("nan"), device=device)
            live = ~finished
            kept[batch_rows[live]] = logits[live].float()
            step_logits.append(kept.cpu())
        tokens = pick_tokens(logits, uniforms[batch_rows, step], settings.temperature, settings.top_p)
        generated[batch_rows, step] = tokens
        ended = torch.isin(tokens, stops) & ~finished
        if bool(ended.any()):
            lengths[batch_rows[ended]] = step
            finished |= ended
            if bool(finished.all()):
                break
            if 4 * int(finished.sum()) >= len(finished):
                keep = (~finished).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                batch_rows, tokens, finished = batch_rows[keep], tokens[keep], finished[keep]
        if step + 1 == steps:
            break
        output = model(input_ids=tokens.unsqueeze(1), cache=cache, use_cache=True)
        logits = output.logits[:, -1, :]
    generated, lengths = generated.cpu(), lengths.tolist()
    return SampledTokens([generated[row, : lengths[row]].tolist() for row in range(rows)], step_logits)


def _join_steps(joined: list[torch.Tensor], chunk: list[torch.Tensor], rows_before: int) -> list[torch.Tensor]:
    """Append a chunk's per-step logits below the earlier rows' (NaN where a side has no such step)."""
    steps = max(len(joined), len(chunk))
    width = chunk[0].shape[-1]
    chunk_rows = chunk[0].shape[0]
    result = []
    for step in range(steps):
        top = joined[step] if step < len(joined) else torch.full((rows_before, width), float("nan"))
        bottom = chunk[step] if step < len(chunk) else torch.full((chunk_rows, width), float("nan"))
        result.append(torch.cat([top, bottom]))
    return result


def _accepts(model: Any, parameter: str) -> bool:
    """Whether ``model.forward`` takes ``parameter``."""
    try:
        return parameter in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class _SeededHF:
    """Per-episode view of an `HFPolicy`: each call uses the next seed of the episode's sequence."""

    def __init__(self, policy: HFPolicy, seed: int) -> None:
        self._policy = policy
        self._seed = seed
        self._calls = 0

    def generate(self, messages: list[Message], stop: list[str]) -> str:
        self._calls += 1
        return self._policy.generate(messages, stop, seed=self._seed + self._calls)
