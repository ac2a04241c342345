"""Save → load round trips, strict refusal of broken checkpoints, and the seq-cls export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from models_helpers import chat_texts, encode
from rewardlab.models import persistence
from rewardlab.models.lora import apply_lora
from rewardlab.models.persistence import (
    CONFIG_FILE,
    HEAD_FILE,
    CheckpointError,
    export_seq_cls,
    load_reward_model,
    read_reward_config,
    save_reward_model,
)
from rewardlab.models.registry import load_backbone
from rewardlab.models.reward_model import RewardModel

SETTINGS = {"max_length": 256, "truncation": "drop", "loss": "bt", "reg": "sft", "alpha": 0.01, "beta": 0.1}


def _trained_like(head: str, *, lora: bool, seed: int = 0) -> tuple[RewardModel, object]:
    """A tiny reward model whose weights all differ from a fresh load (as after training)."""
    backbone, tokenizer = load_backbone("tiny-random")
    torch.manual_seed(seed)
    model = RewardModel(backbone, head)
    if lora:
        apply_lora(model, r=4, alpha=8)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and ("lora_B" in name or not lora or name.startswith("head.")):
                parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval(), tokenizer


def _rewards(model: RewardModel, tokenizer, side: str = "right") -> torch.Tensor:
    with torch.no_grad():
        return model(*encode(tokenizer, chat_texts(tokenizer), side)).rewards


@pytest.fixture(scope="module")
def saved_full_linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    model, tokenizer = _trained_like("linear", lora=False)
    out = tmp_path_factory.mktemp("full-linear") / "model"
    save_reward_model(model, tokenizer, out, SETTINGS)
    return out, _rewards(model, tokenizer)


@pytest.fixture(scope="module")
def saved_lora_linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    model, tokenizer = _trained_like("linear", lora=True, seed=3)
    out = tmp_path_factory.mktemp("lora-linear") / "model"
    save_reward_model(model, tokenizer, out, SETTINGS)
    return out, _rewards(model, tokenizer)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_full_round_trip_is_exact(tmp_path: Path, head: str) -> None:
    model, tokenizer = _trained_like(head, lora=False)
    save_reward_model(model, tokenizer, tmp_path / "rm", SETTINGS)
    loaded, loaded_tokenizer, settings = load_reward_model(tmp_path / "rm")
    assert settings == SETTINGS
    assert loaded.head_config == model.head_config and loaded.base_model == "tiny-random"
    assert torch.equal(_rewards(loaded, loaded_tokenizer), _rewards(model, tokenizer))
    for name, tensor in model.head.state_dict().items():
        assert torch.equal(loaded.head.state_dict()[name], tensor)
    assert loaded_tokenizer.chat_template == tokenizer.chat_template
    assert loaded_tokenizer.pad_token == tokenizer.pad_token
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    config = read_reward_config(tmp_path / "rm")
    assert config["backbone"] == "full" and config["lora"] is None and config["head"]["type"] == head


def test_lora_round_trip_is_exact_and_stores_only_the_adapter(saved_lora_linear) -> None:
    folder, expected = saved_lora_linear
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", HEAD_FILE, CONFIG_FILE} <= names
    assert "model.safetensors" not in names
    config = read_reward_config(folder)
    assert config["backbone"] == "lora" and config["base_model"] == "tiny-random"
    assert config["lora"] == {"r": 4, "alpha": 8, "dropout": 0.05,
                              "targets": ["k_proj", "o_proj", "q_proj", "v_proj"]}
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "tiny-random"
    loaded, tokenizer, settings = load_reward_model(folder)
    assert settings == SETTINGS
    assert torch.equal(_rewards(loaded, tokenizer), expected)


def test_lora_can_be_reloaded_trainable(saved_lora_linear) -> None:
    loaded, _, _ = load_reward_model(saved_lora_linear[0], trainable=True)
    trainable = [n for n, p in loaded.named_parameters() if p.requires_grad]
    assert any("lora_B" in n for n in trainable) and "head.layers.0.weight" in trainable
    assert not any("embed_tokens" in n for n in trainable)


def test_overwrite_replaces_model_files_and_keeps_other_outputs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    full, tokenizer = _trained_like("mlp", lora=False)
    save_reward_model(full, tokenizer, out, SETTINGS)
    (out / "metrics.json").write_text('{"accuracy": 0.9}')
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "step-1.pt").write_bytes(b"x")
    lora, tokenizer = _trained_like("linear", lora=True, seed=5)
    save_reward_model(lora, tokenizer, out, {"max_length": 64})
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" not in names and "config.json" not in names  # nothing left from the old save
    assert (out / "metrics.json").read_text() == '{"accuracy": 0.9}'
    assert (out / "checkpoints" / "step-1.pt").read_bytes() == b"x"
    loaded, loaded_tokenizer, settings = load_reward_model(out)
    assert settings == {"max_length": 64} and loaded.head_config.type == "linear"
    assert torch.equal(_rewards(loaded, loaded_tokenizer), _rewards(lora, tokenizer))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_failed_save_leaves_previous_model_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "rm"
    model, tokenizer = _trained_like("linear", lora=False)
    save_reward_model(model, tokenizer, out, SETTINGS)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def exploding_save(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(persistence, "save_file", exploding_save)
    other, _ = _trained_like("mlp", lora=False, seed=9)
    with pytest.raises(OSError, match="disk full"):
        save_reward_model(other, tokenizer, out, {"different": True})
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert read_reward_config(out)["settings"] == SETTINGS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]


def test_settings_must_be_json(tmp_path: Path) -> None:
    model, tokenizer = _trained_like("linear", lora=False)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_reward_model(model, tokenizer, tmp_path / "rm", {"dtype": torch.float32})
    assert not (tmp_path / "rm").exists()


# --- strict loading: every broken checkpoint is refused with a precise message -------------------

def _copy(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    for key, value in changes.items():
        config[key] = value
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def test_refuses_folder_without_rewardlab_config(tmp_path: Path) -> None:
    backbone, tokenizer = load_backbone("tiny-random")
    backbone.save_pretrained(tmp_path / "plain")
    with pytest.raises(CheckpointError, match=f"has no {CONFIG_FILE}, so it is not a rewardlab reward model"):
        load_reward_model(tmp_path / "plain")
    with pytest.raises(CheckpointError, match="is not a folder"):
        load_reward_model(tmp_path / "nowhere")


def test_refuses_missing_head_file(tmp_path: Path, saved_full_linear) -> None:
    folder = _copy(saved_full_linear[0], tmp_path / "m")
    (folder / HEAD_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"has no {HEAD_FILE}.*never substitutes a random head"):
        load_reward_model(folder)


def test_refuses_head_type_disagreeing_with_weights(tmp_path: Path, saved_full_linear) -> None:
    folder = _copy(saved_full_linear[0], tmp_path / "m")
    config = read_reward_config(folder)
    _edit_config(folder, head={**config["head"], "type": "mlp"})
    with pytest.raises(CheckpointError, match="says head type 'mlp' but reward_head.safetensors holds a 'linear' head"):
        load_reward_model(folder)


def test_refuses_linear_config_with_mlp_weights(tmp_path: Path) -> None:
    model, tokenizer = _trained_like("mlp", lora=False)
    save_reward_model(model, tokenizer, tmp_path / "m", SETTINGS)
    config = read_reward_config(tmp_path / "m")
    _edit_config(tmp_path / "m", head={**config["head"], "type": "linear"})
    with pytest.raises(CheckpointError, match="says head type 'linear' but reward_head.safetensors holds a 'mlp' head"):
        load_reward_model(tmp_path / "m")


def test_refuses_missing_and_unexpected_head_keys(tmp_path: Path) -> None:
    model, tokenizer = _trained_like("mlp", lora=False)
    folder = tmp_path / "m"
    save_reward_model(model, tokenizer, folder, SETTINGS)
    state = load_file(str(folder / HEAD_FILE))
    save_file({k: v for k, v in state.items() if k != "layers.2.bias"}, str(folder / HEAD_FILE))
    with pytest.raises(CheckpointError, match=r"missing keys \['layers.2.bias'\], unexpected keys \[\]"):
        load_reward_model(folder)
    save_file({**state, "layers.4.weight": torch.zeros(1)}, str(folder / HEAD_FILE))
    with pytest.raises(CheckpointError, match=r"missing keys \[\], unexpected keys \['layers.4.weight'\]"):
        load_reward_model(folder)


def test_refuses_head_shape_mismatch(tmp_path: Path, saved_full_linear) -> None:
    folder = _copy(saved_full_linear[0], tmp_path / "m")
    save_file({"layers.0.weight": torch.zeros(1, 32)}, str(folder / HEAD_FILE))
    with pytest.raises(CheckpointError, match=r"'layers.0.weight' has shape \(1, 32\) .* needs \(1, 64\)"):
        load_reward_model(folder)


def test_refuses_head_config_for_another_backbone(tmp_path: Path, saved_full_linear) -> None:
    folder = _copy(saved_full_linear[0], tmp_path / "m")
    config = read_reward_config(folder)
    _edit_config(folder, head={**config["head"], "hidden_size": 32})
    save_file({"layers.0.weight": torch.zeros(1, 32)}, str(folder / HEAD_FILE))
    with pytest.raises(CheckpointError, match="head hidden_size 32 does not match the backbone's 64"):
        load_reward_model(folder)


def test_refuses_missing_backbone_weights(tmp_path: Path, saved_full_linear) -> None:
    folder = _copy(saved_full_linear[0], tmp_path / "m")
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if "layers.0.self_attn.q_proj" not in k},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="the backbone did not load cleanly: .*missing 1 weight"):
        load_reward_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"missing the backbone weights \(model.safetensors\)"):
        load_reward_model(folder)


def test_refuses_missing_adapter_and_foreign_adapter(tmp_path: Path, saved_lora_linear) -> None:
    folder = _copy(saved_lora_linear[0], tmp_path / "m")
    adapter = load_file(str(folder / "adapter_model.safetensors"))
    renamed = {k.replace("layers.1.", "layers.7."): v for k, v in adapter.items()}
    save_file(renamed, str(folder / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit base model 'tiny-random': missing adapter keys"):
        load_reward_model(folder)
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing adapter_model.safetensors \\(the LoRA adapter\\)"):
        load_reward_model(folder)


def test_refuses_unknown_base_model_for_lora(tmp_path: Path, saved_lora_linear) -> None:
    folder = _copy(saved_lora_linear[0], tmp_path / "m")
    empty = tmp_path / "empty-base"
    empty.mkdir()
    _edit_config(folder, base_model=str(empty))
    with pytest.raises(CheckpointError, match="could not load the LoRA base model"):
        load_reward_model(folder)


def test_refuses_corrupt_or_foreign_config(tmp_path: Path, saved_full_linear) -> None:
    folder = _copy(saved_full_linear[0], tmp_path / "m")
    _edit_config(folder, format_version=99)
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        load_reward_model(folder)
    _edit_config(folder, format="something-else", format_version=1)
    with pytest.raises(CheckpointError, match="field 'format' must be 'rewardlab-reward-model'"):
        load_reward_model(folder)
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_reward_model(folder)


# --- export to AutoModelForSequenceClassification -------------------------------------------------

@pytest.mark.parametrize("which", ["full", "lora"])
def test_export_seq_cls_scores_equal_ours(tmp_path: Path, which: str, saved_full_linear, saved_lora_linear) -> None:
    folder, expected = saved_full_linear if which == "full" else saved_lora_linear
    out = tmp_path / "seqcls"
    export_seq_cls(folder, out)
    seq_model, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert seq_model.config.num_labels == 1
    _, tokenizer, _ = load_reward_model(folder)
    assert seq_model.config.pad_token_id == tokenizer.pad_token_id
    assert torch.equal(seq_model.score.weight, load_file(str(folder / HEAD_FILE))["layers.0.weight"])
    seq_model.eval()
    for side in ("right", "left"):
        input_ids, attention_mask = encode(tokenizer, chat_texts(tokenizer), side)
        with torch.no_grad():
            logits = seq_model(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1)
        assert torch.allclose(logits, expected, atol=1e-4), (side, logits, expected)
    assert (out / "tokenizer.json").is_file()
    card = (out / "README.md").read_text()  # the export has its own card, then the source's
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification\n")
    assert "AutoModelForSequenceClassification.from_pretrained" in card and f"`{folder}`" in card
    assert "## The source model" in card and card.count("\n---\n") >= 1 and "library_name: rewardlab" not in card


def test_export_refuses_mlp_head_with_advice(tmp_path: Path) -> None:
    model, tokenizer = _trained_like("mlp", lora=False)
    save_reward_model(model, tokenizer, tmp_path / "m", SETTINGS)
    with pytest.raises(CheckpointError) as info:
        export_seq_cls(tmp_path / "m", tmp_path / "out")
    message = str(info.value)
    assert "reward head is an MLP" in message and "single linear layer" in message
    assert "--head linear" in message and "distill" in message
    assert not (tmp_path / "out").exists()


# --- opening a saved folder the way TRL / OpenRLHF / RewardBench do ----------------------------

def _seq_cls_rewards(seq_model, tokenizer, side: str) -> torch.Tensor:
    input_ids, attention_mask = encode(tokenizer, chat_texts(tokenizer), side)
    with torch.no_grad():
        return seq_model.eval()(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1)


def test_full_linear_folder_loads_as_seq_cls_with_our_rewards(saved_full_linear) -> None:
    folder, expected = saved_full_linear
    seq_model, info = AutoModelForSequenceClassification.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    assert seq_model.config.num_labels == 1
    _, tokenizer, _ = load_reward_model(folder)
    for side in ("right", "left"):
        assert torch.allclose(_seq_cls_rewards(seq_model, tokenizer, side), expected, atol=1e-5)
    assert read_reward_config(folder)["seq_cls"] == {"loads": True, "reason": None}


def test_full_folder_still_loads_as_causal_lm(saved_full_linear) -> None:
    from transformers import AutoModelForCausalLM

    folder, _ = saved_full_linear
    lm, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and info["unexpected_keys"] == {"score.weight"}
    assert lm.config.num_labels == 1


def test_mlp_folder_refuses_to_load_as_seq_cls(tmp_path: Path) -> None:
    model, tokenizer = _trained_like("mlp", lora=False)
    save_reward_model(model, tokenizer, tmp_path / "mlp", SETTINGS)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "mlp")
    assert "MLP" in read_reward_config(tmp_path / "mlp")["seq_cls"]["reason"]
    loaded, loaded_tokenizer, _ = load_reward_model(tmp_path / "mlp")  # rewardlab itself still loads it
    assert torch.equal(_rewards(loaded, loaded_tokenizer), _rewards(model, tokenizer))


@pytest.fixture(scope="module")
def lora_on_local_base(tmp_path_factory: pytest.TempPathFactory):
    """A LoRA reward model whose base is a local folder, so transformers can resolve it by itself."""
    root = tmp_path_factory.mktemp("lora-local")
    backbone, tokenizer = load_backbone("tiny-random")
    backbone.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    results = {}
    for head in ("linear", "mlp"):
        base, tokenizer = load_backbone(str(root / "base"))
        torch.manual_seed(1)
        model = apply_lora(RewardModel(base, head, base_model=str(root / "base")), r=4, alpha=8)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name or name.startswith("head."):
                    parameter.add_(torch.randn_like(parameter) * 0.05)
        save_reward_model(model.eval(), tokenizer, root / head, SETTINGS)
        results[head] = (root / head, _rewards(model, tokenizer), tokenizer)
    return results


def test_lora_folder_as_seq_cls_raises_or_gives_our_rewards(lora_on_local_base) -> None:
    folder, expected, tokenizer = lora_on_local_base["linear"]
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):  # the base config says 2 labels
        AutoModelForSequenceClassification.from_pretrained(folder)
    seq_model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    assert torch.allclose(_seq_cls_rewards(seq_model, tokenizer, "right"), expected, atol=1e-5)
    loaded, loaded_tokenizer, _ = load_reward_model(folder)
    assert torch.equal(_rewards(loaded, loaded_tokenizer), expected)
    mlp_folder, _, _ = lora_on_local_base["mlp"]
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForSequenceClassification.from_pretrained(mlp_folder, num_labels=1)


def test_folder_saved_before_the_score_copy_still_loads(tmp_path: Path, saved_full_linear) -> None:
    folder, expected = saved_full_linear
    old = _copy(folder, tmp_path / "old")
    weights = load_file(str(old / "model.safetensors"))
    del weights["score.weight"]
    save_file(weights, str(old / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((old / CONFIG_FILE).read_text())
    del config["seq_cls"]
    (old / CONFIG_FILE).write_text(json.dumps(config))
    loaded, tokenizer, _ = load_reward_model(old)
    assert torch.equal(_rewards(loaded, tokenizer), expected)
