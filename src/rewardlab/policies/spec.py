"""Policy specs from the command line: ``scripted:NAME``, ``replay:PATH``, ``hf:MODEL``, ``openai:MODEL``."""

from __future__ import annotations

from dataclasses import dataclass

from rewardlab.policies.base import Policy, PolicyError
from rewardlab.policies.scripted import BEHAVIOURS

SPEC_KINDS = ("scripted", "replay", "hf", "openai")


@dataclass(frozen=True)
class PolicySettings:
    """Generation settings for model-backed policies (ignored by scripted and replay policies)."""

    base_url: str | None = None
    max_new_tokens: int = 512
    temperature: float = 1.0
    max_concurrency: int = 8
    max_retries: int = 5
    prefill: str = "continue"
    api_key_env: str = "OPENAI_API_KEY"
    seed: int = 0
    dtype: str = "auto"  # hf: weights' dtype: auto (bfloat16 on a GPU that supports it, else float32), float32, ...


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``kind:value``; `PolicyError` explains the accepted forms."""
    kind, separator, value = spec.partition(":")
    if not separator or kind not in SPEC_KINDS or not value:
        raise PolicyError(
            f"bad policy spec {spec!r}: use scripted:NAME ({', '.join(BEHAVIOURS)}), replay:PATH, "
            "hf:MODEL (alias, hub id or folder) or openai:MODEL with --base-url URL")
    return kind, value


def is_scripted(spec: str) -> bool:
    """True for specs whose commands are written by this package (allowed with ``--sandbox none``)."""
    return spec.partition(":")[0] == "scripted"


def make_policy(spec: str, settings: PolicySettings | None = None) -> Policy:
    """Build the policy a spec names."""
    settings = settings or PolicySettings()
    kind, value = parse_spec(spec)
    if kind == "scripted":
        from rewardlab.policies.scripted import ScriptedPolicy

        return ScriptedPolicy(value)
    if kind == "replay":
        from rewardlab.policies.replay import ReplayPolicy

        return ReplayPolicy.from_file(value)
    if kind == "hf":
        from rewardlab.policies.hf import HFPolicy

        return HFPolicy(value, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                        seed=settings.seed, dtype=settings.dtype)
    from rewardlab.policies.openai_http import OpenAIPolicy

    if not settings.base_url:
        raise PolicyError(f"{spec} needs --base-url (e.g. http://localhost:8000/v1 for a vLLM server)")
    return OpenAIPolicy(value, settings.base_url, api_key_env=settings.api_key_env,
                        max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                        max_concurrency=settings.max_concurrency, max_retries=settings.max_retries,
                        prefill=settings.prefill, seed=settings.seed)
