"""Saving, strictly loading and exporting reward models.

A saved reward model is a Hugging Face style folder:

- the backbone (`config.json` + `model.safetensors`), or for LoRA the adapter
  (`adapter_config.json` + `adapter_model.safetensors`, applied to the base model named in the
  config);
- the tokenizer, with its chat template;
- `reward_head.safetensors`, the head weights;
- `rewardlab_config.json`: format version, base model, head config, LoRA config (or null) and
  the caller's settings (rendering and training options);
- `README.md`, a Hugging Face model card (`models/card.py`).

Loading is strict: a missing, mismatched or wrong-type head is an error, never a random head.

The same folder is also safe to open the way TRL, OpenRLHF and RewardBench open a reward model,
``AutoModelForSequenceClassification.from_pretrained(folder)``: the saved weights carry a
``score.weight`` tensor (in the adapter file for LoRA). For a linear head on an architecture whose
seq-cls model has the causal LM's layout, it is the head itself and ``config.json`` says
``num_labels=1``, so the seq-cls model gives rewardlab's rewards (a LoRA folder needs
``num_labels=1`` passed, since the base model's config is used). Otherwise (an MLP head, or a
layout seq-cls cannot read) it is an empty ``[0, hidden]`` tensor whose shape mismatch makes
transformers raise instead of initialising a random head. Loading as a causal LM reports
``score.weight`` as an unexpected key, which rewardlab's own loading hides.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from rewardlab.errors import RewardlabError
from rewardlab.models.atomic_dir import replace_dir_atomically
from rewardlab.models.card import CARD_FILE, TrainingFacts, render_export_card, render_model_card
from rewardlab.models.heads import HeadConfig, RewardHead
from rewardlab.models.registry import MODEL_ALIASES, ModelLoadError, load_backbone
from rewardlab.models.reward_model import RewardModel
from rewardlab.version import __version__

CONFIG_FILE = "rewardlab_config.json"
HEAD_FILE = "reward_head.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
FORMAT_NAME = "rewardlab-reward-model"
FORMAT_VERSION = 1
SEQ_CLS_PREFIX = "score."
LORA_KEY_PREFIX = "base_model.model."

# Files a save writes; anything else already in the output folder (metrics, checkpoints) is kept.
MODEL_ARTIFACT_NAMES = frozenset({
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "pytorch_model.bin", "merges.txt", "added_tokens.json", "README.md", CONFIG_FILE, HEAD_FILE,
})
MODEL_ARTIFACT_PREFIXES = ("model-", "adapter_", "tokenizer", "special_tokens_map", "chat_template", "vocab.")


class CheckpointError(RewardlabError, ValueError):
    """A saved reward model is incomplete or inconsistent; the message says what and what to do."""


def _head_key_shapes(config: HeadConfig) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in RewardHead(config).state_dict().items()}


def _base_model_reference(model: RewardModel) -> str:
    """How the base model is recorded: alias or hub id as given, local paths made absolute."""
    name = model.base_model
    if not name or name in MODEL_ALIASES:
        return name
    local = Path(name).expanduser()
    return str(local.resolve()) if local.exists() else name


def _lora_settings(model: RewardModel) -> dict[str, Any] | None:
    if not isinstance(model.backbone, PeftModel):
        return None
    config = model.backbone.peft_config["default"]
    if not isinstance(config, LoraConfig):
        raise TypeError(f"only LoRA adapters are supported, found {type(config).__name__}")
    return {"r": config.r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
            "targets": sorted(config.target_modules)}


def _seq_cls_score_layer(model: RewardModel) -> tuple[torch.nn.Linear | None, str | None]:
    """The ``score`` layer ``AutoModelForSequenceClassification`` builds for this backbone (on the meta
    device, no memory), or None and why it could not read the saved causal-LM weights."""
    config = model.causal_lm.config.__class__.from_dict(model.causal_lm.config.to_dict())
    config.num_labels = 1
    try:
        with torch.device("meta"):
            seq_model = AutoModelForSequenceClassification.from_config(config)
            body_keys = set(type(model.causal_lm)(config).state_dict())
    except (ValueError, KeyError):
        return None, f"transformers has no sequence-classification class for {type(config).__name__}"
    score = getattr(seq_model, "score", None)
    if not isinstance(score, torch.nn.Linear) or tuple(score.weight.shape) != (1, model.head_config.hidden_size):
        return None, f"{type(seq_model).__name__} has no linear `score` layer of shape (1, hidden)"
    missing = sorted(key for key in seq_model.state_dict() if not key.startswith(SEQ_CLS_PREFIX) and key not in body_keys)
    if missing:
        return None, f"{type(seq_model).__name__} expects weights the causal LM does not have, e.g. {missing[:3]}"
    return score, None


def seq_cls_tensors(model: RewardModel) -> tuple[dict[str, torch.Tensor], str | None]:
    """The ``score.*`` tensors saved with the backbone, and why seq-cls loading is refused (None: it works).

    A linear head on a compatible layout is saved as the seq-cls ``score`` layer (bias zero where the
    layer has one); anything else gets an empty ``[0, hidden]`` ``score.weight``, whose shape mismatch
    makes ``AutoModelForSequenceClassification.from_pretrained`` raise rather than use a random head.
    """
    dtype = model.causal_lm.get_input_embeddings().weight.dtype
    score, reason = None, "the reward head is an MLP, which a seq-cls `score` layer cannot hold"
    if model.head_config.type == "linear":
        score, reason = _seq_cls_score_layer(model)
    if score is None:
        return {SEQ_CLS_PREFIX + "weight": torch.zeros(0, model.head_config.hidden_size, dtype=dtype)}, reason
    tensors = {SEQ_CLS_PREFIX + "weight": model.head.layers[0].weight.detach().to("cpu", dtype).contiguous()}
    if score.bias is not None:
        tensors[SEQ_CLS_PREFIX + "bias"] = torch.zeros(1, dtype=dtype)
    return tensors, None


def _mark_config_as_reward_model(config_path: Path, pad_token_id: int | None) -> None:
    """``config.json`` of a full backbone: one output labelled "reward", and the pad id seq-cls pools with."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update({"id2label": {"0": "reward"}, "label2id": {"reward": 0}, "problem_type": "regression",
                   "pad_token_id": pad_token_id})
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class _HideOwnScoreKey(logging.Filter):
    """Drops transformers' load report when its only complaint is the unexpected ``score.*`` keys we save."""

    _ROW = re.compile(r"^\s*(\S+)\s*\|\s*(UNEXPECTED|MISSING|MISMATCH)\b")
    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def filter(self, record: logging.LogRecord) -> bool:
        message = self._ANSI.sub("", record.getMessage())
        if "LOAD REPORT" not in message:
            return True
        rows = [match.groups() for line in message.splitlines() if (match := self._ROW.match(line))]
        return not rows or not all(status == "UNEXPECTED" and key.startswith(SEQ_CLS_PREFIX) for key, status in rows)


@contextlib.contextmanager
def _quiet_about_score_key() -> Iterator[None]:
    logger = logging.getLogger("transformers.modeling_utils")
    hide = _HideOwnScoreKey()
    logger.addFilter(hide)
    try:
        yield
    finally:
        logger.removeFilter(hide)


def save_reward_model(
    model: RewardModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path, settings: dict[str, Any],
    *, facts: TrainingFacts | None = None,
) -> None:
    """Save backbone (or LoRA adapter), tokenizer, head, config and model card into `out_dir`, atomically.

    An existing model in `out_dir` is replaced as a whole; other files there (e.g. a trainer's
    metrics or checkpoints) are kept. `settings` must be JSON-serialisable. The model card
    (`README.md`, see `models/card.py`) is written from the config and, when the trainer saves,
    from ``facts`` (data, pair counts, evaluation).
    """
    try:
        settings_json = json.loads(json.dumps(settings))
    except (TypeError, ValueError) as error:
        raise ValueError(f"settings for {out_dir} are not JSON-serialisable: {error}") from error
    lora = _lora_settings(model)
    base_reference = _base_model_reference(model)
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "rewardlab_version": __version__,
        "base_model": base_reference,
        "backbone": "lora" if lora else "full",
        "head": model.head_config.to_dict(),
        "lora": lora,
        "settings": settings_json,
    }
    score_tensors, refusal = seq_cls_tensors(model)
    config["seq_cls"] = {"loads": refusal is None, "reason": refusal}
    target = Path(out_dir).expanduser().resolve()
    card_name = f"{target.parent.parent.name} ({target.name})" if facts is not None and facts.snapshot else target.name

    def write(folder: Path) -> None:
        if lora:
            # Embeddings are frozen under LoRA (and a pad row added at load is rebuilt the same way).
            model.backbone.save_pretrained(folder, save_embedding_layers=False)
            adapter_config_path = folder / ADAPTER_CONFIG_FILE
            adapter_config = json.loads(adapter_config_path.read_text(encoding="utf-8"))
            adapter_config["base_model_name_or_path"] = base_reference
            adapter_config_path.write_text(json.dumps(adapter_config, indent=2), encoding="utf-8")
            adapter_path = folder / ADAPTER_WEIGHTS_FILE
            adapter_state = load_file(str(adapter_path))
            adapter_state.update({LORA_KEY_PREFIX + name: tensor for name, tensor in score_tensors.items()})
            save_file(adapter_state, str(adapter_path), metadata={"format": "pt"})
        else:
            state = {**model.causal_lm.state_dict(), **score_tensors}
            model.causal_lm.save_pretrained(folder, state_dict=state)
            _mark_config_as_reward_model(folder / "config.json", tokenizer.pad_token_id)
        tokenizer.save_pretrained(folder)
        head_state = {name: tensor.detach().to("cpu", torch.float32).contiguous()
                      for name, tensor in model.head.state_dict().items()}
        save_file(head_state, str(folder / HEAD_FILE), metadata={"head_type": model.head_config.type})
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        card = render_model_card(config, name=card_name, facts=facts,
                                 loaded_from=getattr(model.causal_lm.config, "name_or_path", None))
        (folder / CARD_FILE).write_text(card, encoding="utf-8")

    replace_dir_atomically(out_dir, write, artifact_names=MODEL_ARTIFACT_NAMES,
                           artifact_prefixes=MODEL_ARTIFACT_PREFIXES)


def read_reward_config(path: str | Path) -> dict[str, Any]:
    """Read and validate `rewardlab_config.json` of a saved reward model folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder; expected a reward model saved by "
                              "`rewardlab train` or save_reward_model()")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder} has no {CONFIG_FILE}, so it is not a rewardlab reward model (the head type and "
            "weights cannot be trusted without it). Point to a folder written by `rewardlab train` / "
            "save_reward_model(); a plain Hugging Face causal LM can be used as a base with --model.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{config_path} is not valid JSON: {error}") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{config_path}: field 'format' must be {FORMAT_NAME!r}; this file was not "
                              "written by rewardlab")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: format_version {config.get('format_version')!r} is not "
                              f"supported (this rewardlab reads version {FORMAT_VERSION}); upgrade rewardlab")
    for field in ("base_model", "backbone", "head", "settings"):
        if field not in config:
            raise CheckpointError(f"{config_path}: required field {field!r} is missing")
    if config["backbone"] not in ("full", "lora"):
        raise CheckpointError(f"{config_path}: field 'backbone' must be 'full' or 'lora', "
                              f"got {config['backbone']!r}")
    return config


def _parse_head_config(config_path: Path, raw: Any) -> HeadConfig:
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path}: field 'head' must be an object, got {raw!r}")
    try:
        return HeadConfig.from_dict(raw)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: invalid field 'head': {error}") from error


def _load_head_state(folder: Path, head_config: HeadConfig) -> dict[str, torch.Tensor]:
    """Read reward_head.safetensors and check keys, shapes and type against the config."""
    head_path = folder / HEAD_FILE
    if not head_path.is_file():
        raise CheckpointError(
            f"{folder} has no {HEAD_FILE}: the reward head weights are missing, and rewardlab never "
            "substitutes a random head. Re-save the model (save_reward_model / `rewardlab train`) or "
            "copy the head file from the run that produced this folder.")
    try:
        state = load_file(str(head_path))
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{head_path} could not be read as safetensors: {error}") from error
    expected = _head_key_shapes(head_config)
    found = set(state)
    for other_type in ("linear", "mlp"):
        if other_type == head_config.type:
            continue
        other_keys = set(_head_key_shapes(HeadConfig(type=other_type, hidden_size=head_config.hidden_size)))
        if found == other_keys and found != set(expected):
            raise CheckpointError(
                f"{folder}: head type mismatch: {CONFIG_FILE} says head type {head_config.type!r} but "
                f"{HEAD_FILE} holds a {other_type!r} head (keys {sorted(found)}). The config and the "
                "weights come from different runs; re-save the model, or set 'head.type' in "
                f"{CONFIG_FILE} to {other_type!r} if the weights are the right ones.")
    missing = sorted(set(expected) - found)
    unexpected = sorted(found - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{head_path} does not match a {head_config.type!r} head from {CONFIG_FILE}: missing keys "
            f"{missing}, unexpected keys {unexpected}. The file is damaged or from another model; "
            "re-save the model.")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise CheckpointError(
                f"{head_path}: tensor {name!r} has shape {tuple(state[name].shape)} but a "
                f"{head_config.type!r} head with hidden_size {head_config.hidden_size} and mlp_hidden "
                f"{head_config.mlp_hidden} needs {shape}. The head was trained on a different backbone "
                "or the config was edited; re-save the model.")
    return state


def _require_files(folder: Path, names: tuple[str, ...], what: str, hint: str) -> None:
    absent = [name for name in names if not (folder / name).is_file()]
    if absent:
        raise CheckpointError(f"{folder} is missing {', '.join(absent)} ({what}). {hint}")


def _load_lora_backbone(
    folder: Path, config: dict[str, Any], dtype: torch.dtype | None, trainable: bool
) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    _require_files(folder, (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE), "the LoRA adapter",
                   "The config says this model was trained with LoRA; re-save it or copy the adapter files.")
    base = config["base_model"]
    try:
        base_model, _ = load_backbone(base, dtype=dtype)
    except (ModelLoadError, OSError, ValueError) as error:
        raise CheckpointError(f"{folder}: could not load the LoRA base model {base!r} recorded in "
                              f"{CONFIG_FILE}: {error}") from error
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    rows = base_model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise CheckpointError(f"{folder}: the saved tokenizer has {len(tokenizer)} tokens but the base model "
                              f"{base!r} has only {rows} embeddings; the adapter belongs to another base model")
    backbone = PeftModel.from_pretrained(base_model, str(folder), is_trainable=trainable)
    saved = {name: tensor for name, tensor in load_file(str(folder / ADAPTER_WEIGHTS_FILE)).items()
             if not name.startswith(LORA_KEY_PREFIX + SEQ_CLS_PREFIX)}  # the seq-cls score copy, not an adapter
    loaded = get_peft_model_state_dict(backbone, save_embedding_layers=False)
    missing = sorted(set(loaded) - set(saved))
    unexpected = sorted(set(saved) - set(loaded))
    if missing or unexpected:
        raise CheckpointError(
            f"{folder / ADAPTER_WEIGHTS_FILE} does not fit base model {base!r}: missing adapter keys "
            f"{missing[:5]}, unexpected keys {unexpected[:5]}. The adapter was trained on another base "
            "model or the file is damaged.")
    for name, tensor in saved.items():
        if not torch.equal(loaded[name].detach().cpu().to(tensor.dtype), tensor):
            raise CheckpointError(f"{folder}: adapter tensor {name!r} did not load correctly")
    return backbone, tokenizer


def load_reward_model(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    trainable: bool = False,
) -> tuple[RewardModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Load a saved reward model strictly → (model in eval mode, tokenizer, saved settings).

    Raises `CheckpointError` naming the problem for a missing config or head, wrong head keys,
    shapes or type, and missing backbone or adapter files. By default every parameter is frozen
    (inference); `trainable=True` keeps the head, the full backbone or the LoRA adapters
    trainable for resuming training (call `.train()` yourself). The head stays float32 whatever `dtype` the backbone gets.
    """
    folder = Path(path)
    config = read_reward_config(folder)
    config_path = folder / CONFIG_FILE
    head_config = _parse_head_config(config_path, config["head"])
    head_state = _load_head_state(folder, head_config)
    if config["backbone"] == "lora":
        backbone, tokenizer = _load_lora_backbone(folder, config, dtype, trainable)
    else:
        _require_files(folder, ("config.json",), "the backbone config",
                       "Re-save the model; a full fine-tune stores the whole causal LM in the folder.")
        if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
            raise CheckpointError(f"{folder} is missing the backbone weights (model.safetensors). Re-save "
                                  "the model; a full fine-tune stores the whole causal LM in the folder.")
        try:
            with _quiet_about_score_key():
                backbone, tokenizer = load_backbone(str(folder), dtype=dtype)
        except ModelLoadError as error:
            raise CheckpointError(f"{folder}: the backbone did not load cleanly: {error}") from error
    try:
        model = RewardModel(backbone, head_config, base_model=config["base_model"])
    except ValueError as error:
        raise CheckpointError(f"{config_path}: {error}") from error
    model.head.load_state_dict(head_state, strict=True)
    if device is not None:
        model.to(device)
    model.eval()
    if not trainable:
        model.requires_grad_(False)
    return model, tokenizer, config["settings"]


MLP_EXPORT_REFUSAL = (
    "cannot export {path} to a sequence-classification model: its reward head is an MLP "
    "(hidden -> {mlp_hidden} -> ReLU -> 1). A Hugging Face seq-cls model scores with `score`, a "
    "single linear layer, and the ReLU between the MLP's two layers means they cannot be folded "
    "into one. To get an exportable model, train with `--head linear`, or distill this model into "
    "a linear head (fit a linear head to its rewards) and export that."
)


def export_seq_cls(path: str | Path, out_dir: str | Path) -> None:
    """Fold a linear-head reward model into an `AutoModelForSequenceClassification` folder.

    LoRA adapters are merged first; `score.weight` is the head weight, `num_labels=1`, and
    `pad_token_id` is set so the seq-cls model reads the last non-pad token as we do. Its logits
    equal our rewards. MLP heads are refused with an explanation.
    """
    folder = Path(path)
    config = read_reward_config(folder)
    head_config = _parse_head_config(folder / CONFIG_FILE, config["head"])
    if head_config.type != "linear":
        raise CheckpointError(MLP_EXPORT_REFUSAL.format(path=folder, mlp_hidden=head_config.mlp_hidden))
    model, tokenizer, _ = load_reward_model(folder)
    backbone = model.backbone.merge_and_unload() if isinstance(model.backbone, PeftModel) else model.backbone
    seq_config = backbone.config.__class__.from_dict(backbone.config.to_dict())
    seq_config.num_labels = 1
    seq_config.id2label = {0: "reward"}
    seq_config.label2id = {"reward": 0}
    seq_config.problem_type = "regression"
    seq_config.pad_token_id = tokenizer.pad_token_id
    try:
        seq_model = AutoModelForSequenceClassification.from_config(seq_config, dtype=backbone.dtype)
    except ValueError as error:
        raise CheckpointError(f"{type(backbone).__name__} has no sequence-classification counterpart in "
                              f"transformers, so {folder} cannot be exported: {error}") from error
    seq_body = getattr(seq_model, seq_model.base_model_prefix)
    seq_body.load_state_dict(backbone.get_decoder().state_dict(), strict=True)
    score = getattr(seq_model, "score", None)
    if not isinstance(score, torch.nn.Linear) or score.weight.shape != (1, head_config.hidden_size):
        raise CheckpointError(f"{type(seq_model).__name__} has no linear `score` layer of shape "
                              f"(1, {head_config.hidden_size}); exporting this architecture is not supported")
    with torch.no_grad():
        score.weight.copy_(model.head.layers[0].weight.to(score.weight.dtype))
        if score.bias is not None:
            score.bias.zero_()

    source_card = folder / CARD_FILE
    card = render_export_card(source_card.read_text(encoding="utf-8") if source_card.is_file() else None,
                              source=str(folder), name=Path(out_dir).name)

    def write(target: Path) -> None:
        seq_model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        (target / CARD_FILE).write_text(card, encoding="utf-8")

    replace_dir_atomically(out_dir, write, artifact_names=MODEL_ARTIFACT_NAMES,
                           artifact_prefixes=MODEL_ARTIFACT_PREFIXES)
