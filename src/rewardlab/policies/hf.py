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

`HFPolicy.generate_many` serves many episodes at once with the same sampler: the requests' prompts
share the prefill of their longest common token prefix (the episode preamble, or the whole prompt for
the N episodes of one prompt), each distinct remainder is prefilled once, and every request decodes as
one row with its own seed's random stream, stopping at its stop strings. `HFPolicy.generate` is one
such request, so an episode draws the same reply alone or in a batch (up to float rounding).
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
    CONTEXT_LIMIT,
    ContextLimitError,
    Generation,
    GenerationRequest,
    PolicyError,
    SamplingSettings,
    check_sample_request,
    continuation_prefix,
    cut_at_stop,
    sample_seed,
    text_or_raise,
)

POLICY_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Weight dtypes a local policy can run in (``auto``: bfloat16 on a GPU that supports it, else float32)."""
CPU_SAMPLE_MEMORY = 4 << 30
"""Bytes of KV cache one decoding batch of `HFPolicy.sample` may use on a CPU."""
GPU_SAMPLE_MEMORY_SHARE = 0.5
"""Share of the free accelerator memory one decoding batch of `HFPolicy.sample` may use."""
SHARED_PREFIX_MIN_TOKENS = 16
"""`HFPolicy.generate_many` prefills a common prompt prefix once when it is at least this long."""
STOP_WINDOW_TOKENS = 16
"""How many trailing tokens are decoded to look for a stop string after each step."""


@dataclass
class SampledTokens:
    """Token ids of sampled continuations (EOS excluded), with each decoding step's logits when asked for."""

    tokens: list[list[int]]
    step_logits: list[torch.Tensor] | None = None
    """Per step, ``[rows, vocab]`` float32 logits the step's token was drawn from (NaN for finished rows)."""
    finish_reasons: list[str] | None = None
    """Per row: ``eos``, ``stop`` (a stop string, whose tokens are kept) or ``length``."""


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
        self._set_sampling(max_new_tokens, temperature, top_p, seed, sample_batch)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str = "model", max_new_tokens: int = 512,
                   temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                   sample_batch: int | None = None) -> "HFPolicy":
        """A policy over a model already in memory (e.g. one being trained, a PEFT model included), as it is:
        its device, dtype and train/eval mode are left to the caller."""
        if max_new_tokens <= 0:
            raise PolicyError(f"max_new_tokens must be positive, got {max_new_tokens}")
        policy = cls.__new__(cls)
        policy.model_name, policy.model, policy.tokenizer = name, model, tokenizer
        parameter = next(model.parameters())
        policy.device, policy.dtype = parameter.device, parameter.dtype
        policy._set_sampling(max_new_tokens, temperature, top_p, seed, sample_batch)
        return policy

    def _set_sampling(self, max_new_tokens: int, temperature: float, top_p: float, seed: int,
                      sample_batch: int | None) -> None:
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
        identity = (self.seed, hints.get("env"), hints.get("seed"), hints.get("index"))
        if hints.get("sample"):
            identity = (*identity, hints["sample"])
        key = repr(identity).encode("utf-8")
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
            raise ContextLimitError(f"prompt of {len(ids)} tokens plus {max_new_tokens} new tokens exceeds "
                                    f"the context of {limit} tokens of {self.model_name!r}")
        return ids

    def generate(self, messages: list[Message], stop: list[str], *, seed: int | None = None) -> str:
        """The assistant message: any assistant opening plus the generated continuation, cut at ``stop``."""
        if seed is None:
            with self._lock:
                self._calls += 1
                seed = self.seed + self._calls
        self.check_fits(messages)
        return text_or_raise(self.generate_many([GenerationRequest(messages, list(stop), seed)])[0])

    def check_fits(self, messages: list[Message]) -> None:
        """Raise `ContextLimitError`, with the token counts, if ``messages`` plus a reply exceed the context."""
        self.prompt_ids(self.prompt_text(messages), self.max_new_tokens)

    def generate_many(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One reply per request, decoded together (see the module docstring); the policy's temperature,
        top-p and ``max_new_tokens`` apply to all of them."""
        if not requests:
            return []
        settings = SamplingSettings(temperature=self.temperature, top_p=self.top_p,
                                    max_new_tokens=self.max_new_tokens, seed=self.seed)
        texts = [self.prompt_text(request.messages) for request in requests]
        ids: dict[int, list[int]] = {}
        results: list[Generation | None] = [None] * len(requests)
        for index, text in enumerate(texts):
            try:
                ids[index] = self.prompt_ids(text, settings.max_new_tokens)
            except ContextLimitError:
                results[index] = Generation(continuation_prefix(requests[index].messages), CONTEXT_LIMIT)
        fitting = sorted(ids)
        if not fitting:
            return results  # type: ignore[return-value]
        rows = self.sample_batch or self._rows_that_fit(max(len(row) for row in ids.values()) + settings.max_new_tokens)
        stop_ids = self.eos_ids()
        with self._lock, torch.inference_mode():
            for begin in range(0, len(fitting), rows):
                chunk = fitting[begin:begin + rows]
                distinct: dict[str, int] = {}
                row_prompt = [distinct.setdefault(texts[i], len(distinct)) for i in chunk]
                prompts: list[list[int]] = [[] for _ in distinct]
                for i, number in zip(chunk, row_prompt):
                    prompts[number] = ids[i]
                cache, logits, mask = self._prefill_shared(prompts)
                select = torch.tensor(row_prompt, dtype=torch.long, device=self.device)
                cache.batch_select_indices(select)
                uniforms = torch.stack([seeded_uniforms(requests[i].seed, settings.max_new_tokens) for i in chunk])
                decoded = decode_rows(self.model, cache, logits[select], uniforms.to(self.device), settings, stop_ids,
                                      attention_mask=mask[select],
                                      stop_strings=[list(requests[i].stop) for i in chunk], tokenizer=self.tokenizer)
                for row, i in enumerate(chunk):
                    text = self.tokenizer.decode(decoded.tokens[row], skip_special_tokens=True)
                    reason = decoded.finish_reasons[row] if decoded.finish_reasons else None
                    results[i] = Generation(continuation_prefix(requests[i].messages)
                                            + cut_at_stop(text, list(requests[i].stop)), reason)
        return results  # type: ignore[return-value]

    def _prefill_shared(self, prompts: list[list[int]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Prefill distinct prompts: their common token prefix once, then each remainder (left-padded after
        the prefix). Returns the cache (one row per prompt), each prompt's last logits and the attention mask."""
        shortest = min(len(prompt) for prompt in prompts)
        common = 0
        while common < shortest - 1 and all(prompt[common] == prompts[0][common] for prompt in prompts):
            common += 1
        options = {"logits_to_keep": 1} if _accepts(self._base_model(), "logits_to_keep") else {}
        cache = None
        if common >= SHARED_PREFIX_MIN_TOKENS:
            cache = self.model(input_ids=torch.tensor([prompts[0][:common]], device=self.device),
                               use_cache=True, **options).cache
            cache.batch_repeat_interleave(len(prompts))
        else:
            common = 0
        rests = [prompt[common:] for prompt in prompts]
        width = max(len(rest) for rest in rests)
        inputs = torch.full((len(rests), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        rest_mask = torch.zeros_like(inputs)
        for row, rest in enumerate(rests):
            inputs[row, width - len(rest):] = torch.tensor(rest, dtype=torch.long)
            rest_mask[row, width - len(rest):] = 1
        mask = torch.cat([torch.ones((len(rests), common), dtype=torch.long), rest_mask], dim=1).to(self.device)
        positions = (common + (rest_mask.cumsum(-1) - 1).clamp(min=0)).to(self.device)
        extra = {"cache": cache} if cache is not None else {}
        output = self.model(input_ids=inputs.to(self.device), attention_mask=mask, position_ids=positions,
                            use_cache=True, **extra, **options)
        return output.cache, output.logits[:, -1, :], mask

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

    def sample_tokens_many(self, prompts: list[list[Message]], k: int, settings: SamplingSettings, *,
                           start: int = 0) -> list[SampledTokens]:
        """`sample_tokens` for several prompts at once: left-padded prompts prefilled together, then all their
        samples decoded as one batch (one decoding step serves every row, which on a CPU costs little more
        than one). Sample ``j`` of a prompt uses the same random stream as in `sample_tokens`, so the two
        give the same samples up to float rounding."""
        check_sample_request(k, start)
        if not prompts:
            return []
        texts = [self.prompt_text(messages) for messages in prompts]
        ids = [self.prompt_ids(text, settings.max_new_tokens) for text in texts]
        longest = max(len(row) for row in ids) + settings.max_new_tokens
        rows = self.sample_batch or self._rows_that_fit(longest)
        per_chunk = max(1, rows // k)
        results: list[SampledTokens] = []
        stop_ids = self.eos_ids()
        with self._lock, torch.inference_mode():
            for begin in range(0, len(prompts), per_chunk):
                chunk = list(range(begin, min(begin + per_chunk, len(prompts))))
                width = max(len(ids[i]) for i in chunk)
                inputs = torch.full((len(chunk), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(inputs)
                for row, i in enumerate(chunk):
                    inputs[row, width - len(ids[i]):] = torch.tensor(ids[i], dtype=torch.long)
                    mask[row, width - len(ids[i]):] = 1
                inputs, mask = inputs.to(self.device), mask.to(self.device)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                options = {"logits_to_keep": 1} if _accepts(self._base_model(), "logits_to_keep") else {}
                prefill = self.model(input_ids=inputs, attention_mask=mask, position_ids=positions, use_cache=True,
                                     **options)
                prefill.cache.batch_repeat_interleave(k)
                uniforms = torch.cat([sample_uniforms(settings, texts[i], start, k, device=self.device) for i in chunk])
                decoded = decode_rows(self.model, prefill.cache, prefill.logits[:, -1, :].repeat_interleave(k, 0),
                                      uniforms, settings, stop_ids, attention_mask=mask.repeat_interleave(k, 0))
                for row in range(len(chunk)):
                    results.append(SampledTokens(decoded.tokens[row * k:(row + 1) * k]))
        return results

    def _base_model(self) -> Any:
        """The transformers model under any PEFT wrapper (whose forward takes only ``**kwargs``)."""
        return self.model.get_base_model() if callable(getattr(self.model, "get_base_model", None)) else self.model

    def continuation_logprobs(self, messages: list[Message], continuations: list[list[int]],
                              settings: SamplingSettings) -> list[float]:
        """Log-probability of each sampled continuation (token ids, EOS excluded, as `sample_tokens` returns
        them) under the model at ``settings.temperature``: its tokens, plus stopping where it is shorter than
        ``settings.max_new_tokens`` (the probability of any EOS id). Top-p is not applied.

        The mean over samples of log π − log π_ref is the usual unbiased estimate of the sequence KL.
        """
        return self.continuation_logprobs_many([messages], [continuations], settings)[0]

    def continuation_logprobs_many(self, prompts: list[list[Message]], continuations: list[list[list[int]]],
                                   settings: SamplingSettings, *, batch_rows: int = 16) -> list[list[float]]:
        """`continuation_logprobs` for several prompts (``continuations[i]`` answer ``prompts[i]``), batched."""
        per_token = self.continuation_token_logprobs(prompts, continuations, settings, batch_rows=batch_rows)
        return [[float(sum(row)) for row in rows] for rows in per_token]

    def continuation_token_logprobs(self, prompts: list[list[Message]], continuations: list[list[list[int]]],
                                    settings: SamplingSettings, *, batch_rows: int = 16) -> list[list[list[float]]]:
        """Per sampled token, its log-probability (and, for a continuation that stopped early, the log-probability
        of stopping as a last entry): the terms `continuation_logprobs_many` sums."""
        if len(prompts) != len(continuations):
            raise PolicyError(f"{len(prompts)} prompts but {len(continuations)} lists of continuations")
        flat = [(self.prompt_ids(self.prompt_text(messages), settings.max_new_tokens), list(tokens))
                for messages, rows in zip(prompts, continuations) for tokens in rows]
        stops = torch.tensor(self.eos_ids(), dtype=torch.long)
        totals: list[list[float]] = []
        with self._lock, torch.inference_mode():
            for begin in range(0, len(flat), batch_rows):
                batch = flat[begin:begin + batch_rows]
                width = max(len(ids) + len(tokens) for ids, tokens in batch)
                inputs = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(inputs)
                for row, (ids, tokens) in enumerate(batch):
                    inputs[row, : len(ids) + len(tokens)] = torch.tensor(ids + tokens, dtype=torch.long)
                    mask[row, : len(ids) + len(tokens)] = 1
                logits = self.model(input_ids=inputs.to(self.device), attention_mask=mask.to(self.device)).logits
                for row, (ids, tokens) in enumerate(batch):
                    steps = logits[row, len(ids) - 1: len(ids) + len(tokens)].float().cpu()
                    logps = torch.log_softmax(steps / settings.temperature, dim=-1)
                    terms = logps[torch.arange(len(tokens)), torch.tensor(tokens, dtype=torch.long)].tolist()
                    if len(tokens) < settings.max_new_tokens:
                        terms.append(float(torch.logsumexp(logps[len(tokens), stops], dim=0)))
                    totals.append(terms)
        out, index = [], 0
        for rows in continuations:
            out.append(totals[index:index + len(rows)])
            index += len(rows)
        return out

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


def seeded_uniforms(seed: int, steps: int) -> torch.Tensor:
    """``[steps]`` float64 uniforms in [0, 1): the random stream of one request seeded with ``seed``."""
    generator = torch.Generator().manual_seed(int(seed) % (1 << 63))
    return torch.rand(steps, generator=generator, dtype=torch.float64)


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
                settings: SamplingSettings, stop_ids: list[int], *, keep_logits: bool = False,
                attention_mask: torch.Tensor | None = None, stop_strings: list[list[str]] | None = None,
                tokenizer: Any = None) -> SampledTokens:
    """Decode ``len(uniforms)`` continuations of prefilled prompts.

    With ``first_logits`` ``[1, vocab]`` (one prompt's last-position logits) the cache holds that prompt's
    one row and is repeated to one row per sample (in place). With ``[rows, vocab]`` the cache already
    holds one row per sample, and ``attention_mask`` ``[rows, prompt width]`` marks padding (positions
    then continue from each row's own length). ``stop_strings[row]`` (decoded with ``tokenizer``) end a row
    like an EOS id does, but their tokens are kept. Rows that finished are removed from the cache once a
    quarter of the batch has finished, so late steps do not pay for finished rows.
    """
    rows, steps = uniforms.shape
    device = first_logits.device
    if first_logits.shape[0] == 1 and rows > 1:
        cache.batch_repeat_interleave(rows)
        logits = first_logits.expand(rows, -1)
    else:
        logits = first_logits
    mask = attention_mask
    positions = mask.sum(-1) if mask is not None else None
    stops = torch.tensor(stop_ids, device=device, dtype=torch.long)
    generated = torch.zeros((rows, steps), dtype=torch.long, device=device)
    lengths = torch.full((rows,), steps, dtype=torch.long, device=device)
    reasons = ["length"] * rows
    batch_rows = torch.arange(rows, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    watched = stop_strings is not None and any(stop_strings)
    if watched and tokenizer is None:
        raise ValueError("decode_rows needs the tokenizer to look for stop strings")
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
        for position in ended.nonzero().squeeze(1).tolist():
            row = int(batch_rows[position])
            lengths[row], reasons[row] = step, "eos"
        if watched:
            for position in (~(finished | ended)).nonzero().squeeze(1).tolist():
                row = int(batch_rows[position])
                if stop_strings[row] and _ends_in_stop(tokenizer, generated[row, max(0, step + 1 - STOP_WINDOW_TOKENS): step + 1],
                                                       stop_strings[row]):
                    lengths[row], reasons[row] = step + 1, "stop"
                    ended[position] = True
        if bool(ended.any()):
            finished |= ended
            if bool(finished.all()):
                break
            if 4 * int(finished.sum()) >= len(finished):
                keep = (~finished).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                batch_rows, tokens, finished = batch_rows[keep], tokens[keep], finished[keep]
                if mask is not None:
                    mask, positions = mask[keep], positions[keep]
        if step + 1 == steps:
            break
        if mask is None:
            output = model(input_ids=tokens.unsqueeze(1), cache=cache, use_cache=True)
        else:
            mask = torch.cat([mask, torch.ones((len(mask), 1), dtype=mask.dtype, device=device)], dim=1)
            output = model(input_ids=tokens.unsqueeze(1), attention_mask=mask, position_ids=positions.unsqueeze(1),
                           cache=cache, use_cache=True)
            positions = positions + 1
        logits = output.logits[:, -1, :]
    generated, lengths = generated.cpu(), lengths.tolist()
    return SampledTokens([generated[row, : lengths[row]].tolist() for row in range(rows)], step_logits, reasons)


def _ends_in_stop(tokenizer: Any, tail: torch.Tensor, stop: list[str]) -> bool:
    """Whether the decoded ``tail`` tokens contain one of the stop strings."""
    text = tokenizer.decode(tail.tolist(), skip_special_tokens=True)
    return any(marker and marker in text for marker in stop)


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
        self._policy.check_fits(messages)
        return text_or_raise(self._policy.generate_many([self.request(messages, stop)])[0])

    def request(self, messages: list[Message], stop: list[str]) -> GenerationRequest:
        """The next call of this episode as a request for `HFPolicy.generate_many` (same seed as `generate`)."""
        self._calls += 1
        return GenerationRequest(messages, list(stop), self._seed + self._calls)
