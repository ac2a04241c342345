"""Local transformers policy: a causal LM generating with its chat template.

The prompt is the tokenizer's chat template; a trailing assistant message is continued
(``continue_final_message``). Stop strings are honoured during generation and the text is cut
right after the first one. Generation is serialised with a lock, so one model can serve several
runner threads.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping
from typing import Any

import torch

from rewardlab.data.pair import Message
from rewardlab.data.render import with_special_tokens
from rewardlab.policies.base import PolicyError, continuation_prefix, cut_at_stop


class HFPolicy:
    """Generates with a local model (an alias such as ``smollm2-135m``, a hub id or a folder)."""

    def __init__(self, model_name: str, *, max_new_tokens: int = 512, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0, device: str | None = None) -> None:
        from rewardlab.models.registry import load_backbone

        if max_new_tokens <= 0:
            raise PolicyError(f"max_new_tokens must be positive, got {max_new_tokens}")
        self.model_name = model_name
        self.model, self.tokenizer = load_backbone(model_name)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
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

    def generate(self, messages: list[Message], stop: list[str], *, seed: int | None = None) -> str:
        """The assistant message: any assistant opening plus the generated continuation, cut at ``stop``."""
        text = self.prompt_text(messages)
        ids = with_special_tokens(self.tokenizer, self.tokenizer(text, add_special_tokens=False)["input_ids"], whole=False)
        input_ids = torch.tensor([ids], device=self.device)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and input_ids.shape[1] + self.max_new_tokens > limit:
            raise PolicyError(f"prompt of {input_ids.shape[1]} tokens plus {self.max_new_tokens} new tokens exceeds "
                              f"the context of {limit} tokens of {self.model_name!r}")
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


class _SeededHF:
    """Per-episode view of an `HFPolicy`: each call uses the next seed of the episode's sequence."""

    def __init__(self, policy: HFPolicy, seed: int) -> None:
        self._policy = policy
        self._seed = seed
        self._calls = 0

    def generate(self, messages: list[Message], stop: list[str]) -> str:
        self._calls += 1
        return self._policy.generate(messages, stop, seed=self._seed + self._calls)
