"""Registry: aliases, the tiny-random model, the build-once cache, pad-token policy."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rewardlab.models import cache as cache_module
from rewardlab.models.cache import CACHE_ENV_VAR, MARKER_FILE, cached_folder, model_cache_dir
from rewardlab.models.padding import ADDED_PAD_TOKEN, ensure_pad_token, pad_token_is_safe
from rewardlab.models.registry import MODEL_ALIASES, ModelLoadError, load_backbone, load_tokenizer, resolve_model_path
from rewardlab.models.tiny_random import CHATML_TEMPLATE, build_tiny_model, build_tiny_tokenizer

SENTENCE = "The assistant explains how to convert five miles into kilometres and checks the answer twice."


def test_aliases_are_registered_in_one_table() -> None:
    assert {"smollm2-135m", "tiny-random"} <= set(MODEL_ALIASES)
    for name, alias in MODEL_ALIASES.items():
        assert alias.name == name and alias.description


def test_tiny_random_resolves_to_a_cache_folder(isolated_model_cache: Path) -> None:
    folder = Path(resolve_model_path("tiny-random"))
    assert folder == isolated_model_cache / "models" / "tiny-random"
    for name in ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE):
        assert (folder / name).is_file(), name


def test_tiny_random_is_deterministic_across_fresh_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "a"))
    model_a, tok_a = load_backbone("tiny-random")
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "b"))
    model_b, tok_b = load_backbone("tiny-random")
    assert resolve_model_path("tiny-random") != str(tmp_path / "a" / "models" / "tiny-random")
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name
    assert tok_a.backend_tokenizer.to_str() == tok_b.backend_tokenizer.to_str()
    assert tok_a(SENTENCE)["input_ids"] == tok_b(SENTENCE)["input_ids"]


def test_tiny_random_architecture_and_tokenizer() -> None:
    model, tokenizer = load_backbone("tiny-random")
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size) == (64, 2, 4, 2, 128)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    assert model.dtype == torch.float32
    assert config.vocab_size == len(tokenizer) == 4096
    ids = tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    assert 3.0 <= len(SENTENCE) / len(ids) <= 6.0
    assert tokenizer.decode(ids) == SENTENCE
    assert tokenizer.pad_token == "<|endoftext|>" and config.pad_token_id == tokenizer.pad_token_id
    assert pad_token_is_safe(tokenizer)


def test_tiny_random_chat_template_is_chatml() -> None:
    tokenizer = load_tokenizer("tiny-random")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n")
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    special = tokenizer("<|im_start|>user", add_special_tokens=False)["input_ids"]
    assert special[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_second_load_uses_the_cache_without_rebuilding(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = Path(resolve_model_path("tiny-random"))
    marker_time = (folder / MARKER_FILE).stat().st_mtime_ns

    def fail_build(_: Path) -> None:
        raise AssertionError("cache should have been reused")

    monkeypatch.setattr("rewardlab.models.registry.write_tiny_random", fail_build)
    load_backbone("tiny-random")
    assert (folder / MARKER_FILE).stat().st_mtime_ns == marker_time


def test_cache_rebuilds_on_recipe_change_and_builds_once_under_concurrency(isolated_model_cache: Path) -> None:
    calls: list[int] = []

    def slow_build(folder: Path) -> None:
        calls.append(1)
        time.sleep(0.3)
        (folder / "payload.txt").write_text(f"build {len(calls)}")

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(cached_folder("demo", {"v": 1}, slow_build)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1
    assert (results[0] / "payload.txt").read_text() == "build 1"

    rebuilt = cached_folder("demo", {"v": 2}, slow_build)
    assert (rebuilt / "payload.txt").read_text() == "build 2" and len(calls) == 2
    leftovers = [p.name for p in rebuilt.parent.iterdir() if p.name.startswith(".demo.") and not p.name.endswith(".lock")]
    assert leftovers == []


def test_failed_build_leaves_no_cache_entry() -> None:
    def broken_build(folder: Path) -> None:
        (folder / "half.txt").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cached_folder("broken", {"v": 1}, broken_build)
    final = model_cache_dir("broken")
    assert not final.exists()
    assert not [p for p in final.parent.iterdir() if p.name.startswith(".broken.tmp")]


def test_cache_root_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_module.cache_root() == tmp_path / ".cache" / "rewardlab"


def _tokenizer_without_pad(extra_specials: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>", *extra_specials],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(["hello world, the answer is four"] * 10, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   chat_template=CHATML_TEMPLATE)


def test_pad_equal_to_turn_end_is_replaced_by_an_unused_special_token() -> None:
    tokenizer = _tokenizer_without_pad(("<|endoftext|>",))
    tokenizer.pad_token = "<|im_end|>"  # SmolLM2's default, emitted by its template
    assert not pad_token_is_safe(tokenizer)
    assert ensure_pad_token(tokenizer) is False
    assert tokenizer.pad_token == "<|endoftext|>" and pad_token_is_safe(tokenizer)


def test_missing_pad_is_added_and_embeddings_grow_deterministically(tmp_path: Path) -> None:
    tokenizer = _tokenizer_without_pad()
    assert tokenizer.pad_token is None
    tokenizer.pad_token = "<|im_end|>"
    reference = build_tiny_model(tokenizer)
    tokenizer.pad_token = None
    reference.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    rows_before = reference.get_input_embeddings().num_embeddings

    model, loaded = load_backbone(str(tmp_path))
    assert loaded.pad_token == ADDED_PAD_TOKEN and pad_token_is_safe(loaded)
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] == len(loaded) == rows_before + 1
    assert model.config.pad_token_id == loaded.pad_token_id == rows_before
    assert torch.allclose(embeddings[-1], reference.get_input_embeddings().weight.mean(0))
    assert load_tokenizer(str(tmp_path)).pad_token_id == loaded.pad_token_id


def test_local_folder_without_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load a tokenizer for model") as info:
        load_backbone(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_checkpoint_missing_weights_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    model, tokenizer = load_backbone("tiny-random")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    dropped = [name for name in weights if "layers.1.mlp.down_proj" in name]
    assert dropped
    save_file({k: v for k, v in weights.items() if k not in dropped}, str(tmp_path / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="missing 1 weight"):
        load_backbone(str(tmp_path))


def test_tokenizer_builder_is_deterministic_in_process() -> None:
    first, second = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()


def test_mistyped_alias_is_refused_naming_the_aliases() -> None:
    with pytest.raises(ModelLoadError, match=r"unknown model 'tiny-randm': did you mean 'tiny-random'\?") as info:
        resolve_model_path("tiny-randm")
    assert "smollm2-135m" in str(info.value) and str(info.value).count("\n") == 0
    with pytest.raises(ModelLoadError, match=r"did you mean 'smollm2-135m'"):
        load_tokenizer("SmolLM2-135")
    with pytest.raises(ModelLoadError, match=r"model folder './runs/no-such-model' does not exist.*tiny-random"):
        load_backbone("./runs/no-such-model")


def test_a_failed_hub_load_names_the_model_and_the_aliases_in_two_lines(tmp_path: Path) -> None:
    """Real hub requests, answered by a local server: typos never reach it, a hub id does and fails cleanly."""
    import json
    import os
    import subprocess
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.path)
            self.send_response(404)
            self.send_header("X-Error-Code", "RepositoryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script = (
        "import json, sys\n"
        "from rewardlab.models.registry import ModelLoadError, load_backbone\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        load_backbone(name)\n"
        "        out[name] = None\n"
        "    except ModelLoadError as error:\n"
        "        out[name] = str(error)\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    try:
        result = subprocess.run([sys.executable, "-c", script, "tiny-randon", "someorg/no-such-model"],
                                capture_output=True, text=True, env=env, timeout=120, check=True)
    finally:
        server.shutdown()
    messages = json.loads(result.stdout.strip().splitlines()[-1])
    assert "did you mean 'tiny-random'" in messages["tiny-randon"]
    hub_error = messages["someorg/no-such-model"]
    assert hub_error.startswith("could not load a tokenizer for model 'someorg/no-such-model': it is no local folder")
    assert hub_error.count("\n") == 1
    assert hub_error.endswith("Known aliases: smollm2-135m, tiny-random; a local folder also works.")
    assert any("someorg/no-such-model" in path for path in seen)
    assert not any("tiny-rand" in path for path in seen)  # the typo made no hub request
