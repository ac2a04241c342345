"""The model card (`README.md`) written with every saved reward model.

Hugging Face model-card front matter (library, base model, license, tags) and a body that says what
the model is, what it was trained on and how, what it measured, and how to load and score it. The
facts come from `rewardlab_config.json` (always there) and, when the trainer saves, from
`TrainingFacts` (data, pair counts, steps, evaluation); a model saved outside `rewardlab train` gets
a card without those sections' numbers, saying that they are unknown.

The base model's license is read where it is recorded without a network request: a known alias, the
front matter of the base folder's own `README.md`, or the Hub card in the local Hugging Face cache.
Otherwise the card says ``unknown`` and asks the publisher to check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CARD_FILE = "README.md"

# Aliases whose upstream is on the Hub: hub id and the license its Hub card states.
_KNOWN_BASES = {
    "smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0",
                     "from the HuggingFaceTB/SmolLM2-135M-Instruct model card"),
}
_OWN_BASES = {
    "tiny-random": "tiny-random is a 2-layer random Llama built offline by rewardlab for tests; "
                   "it has no upstream license",
}


@dataclass
class TrainingFacts:
    """What the trainer knows about a model it saves, for the card (all optional)."""

    data: str | None = None
    train_pairs: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    steps: int | None = None
    total_steps: int | None = None
    pairs_per_step: int | None = None
    epochs: float | None = None
    lr: float | None = None
    lr_scheduler_type: str | None = None
    num_processes: int | None = None
    eval_data: str | None = None
    eval: dict[str, Any] | None = None  # {"accuracy", "n", "dropped"} as `evaluate_accuracy` returns it
    eval_interval: tuple[float, float] | None = None  # 95% interval of eval["accuracy"], from the trainer
    interval_method: str | None = None  # how that interval was computed, in words
    snapshot: bool = False  # saved during training (snapshot_steps), not at its end


@dataclass(frozen=True)
class BaseFacts:
    """The base model as the card names it: Hub id (None if not on the Hub), license and where it came from."""

    reference: str
    hub_id: str | None
    license: str
    license_note: str


def _front_matter(text: str) -> dict[str, Any]:
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _license_in(readme: Path | None) -> str | None:
    if readme is None or not readme.is_file():
        return None
    try:
        meta = _front_matter(readme.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    value = meta.get("license")
    if value == "other" and meta.get("license_name"):
        return f"other ({meta['license_name']})"
    return str(value) if isinstance(value, str) and value else None


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).expanduser().exists() and not name.startswith((".", "~"))


def _cached_hub_readme(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, CARD_FILE)
    except (ValueError, OSError):  # an id the cache API refuses (HFValidationError), an unreadable cache
        return None
    return Path(found) if isinstance(found, str) else None


def describe_base(reference: str, loaded_from: str | None = None) -> BaseFacts:
    """The base model's Hub id and license, found offline; ``unknown`` with a note when not recorded.

    ``reference`` is the base as `rewardlab_config.json` records it (alias, hub id or absolute path);
    ``loaded_from`` is the folder or id transformers loaded it from (its ``name_or_path``).
    """
    if reference in _KNOWN_BASES:
        hub_id, license_id, note = _KNOWN_BASES[reference]
        return BaseFacts(reference, hub_id, license_id, note)
    hub_id = reference if _looks_like_hub_id(reference) else None
    candidates: list[tuple[Path | None, str]] = []
    if hub_id:
        candidates.append((_cached_hub_readme(hub_id), f"from the {hub_id} model card in the local Hugging Face cache"))
    for folder in (reference, loaded_from):
        if folder and Path(folder).expanduser().is_dir():
            candidates.append((Path(folder).expanduser() / CARD_FILE, f"from {Path(folder).expanduser() / CARD_FILE}"))
    for readme, note in candidates:
        found = _license_in(readme)
        if found:
            return BaseFacts(reference, hub_id, found, note)
    if reference in _OWN_BASES:
        note = _OWN_BASES[reference]
    else:
        note = ("the base model's license is not recorded where rewardlab can read it offline (no `license` in "
                "its model card); check it before publishing this model, whose weights derive from it")
    return BaseFacts(reference, hub_id, "unknown", note)


def _yaml_scalar(value: str) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _variant(settings: dict[str, Any]) -> str | None:
    reg = settings.get("reg")
    if reg is None:
        return None
    return "bt" if reg == "none" else "grm"


def _fmt(value: Any, absent: str = "not recorded") -> str:
    if value is None:
        return absent
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _accuracy_line(facts: TrainingFacts | None) -> list[str]:
    if facts is None or facts.eval is None:
        hint = ("No evaluation data was given to `rewardlab train` (`--eval-data`)." if facts is not None
                else "This model was saved without a training record, so no accuracy is known.")
        if facts is not None and facts.snapshot:
            hint = "This snapshot was saved during training, before the final evaluation."
        return [hint, "", "Measure it with `rewardlab eval MODEL_DIR --suite offline` (or `--data FILE`)."]
    accuracy, n = facts.eval.get("accuracy"), int(facts.eval.get("n") or 0)
    where = f"`{facts.eval_data}`" if facts.eval_data else "the evaluation data"
    if accuracy is None or n == 0 or (isinstance(accuracy, float) and math.isnan(accuracy)):
        return [f"Pairwise accuracy on {where}: not measured (no pair could be scored)."]
    correct = round(accuracy * n)
    interval = (f"[{facts.eval_interval[0]:.4f}, {facts.eval_interval[1]:.4f}]" if facts.eval_interval is not None
                else "not recorded")
    lines = ["| eval data | pairs scored | pairwise accuracy | 95% interval |",
             "|---|---:|---:|---|",
             f"| {where} | {n} | {accuracy:.4f} ({correct}/{n}) | {interval} |", ""]
    dropped = int(facts.eval.get("dropped") or 0)
    if dropped:
        lines += [f"Not scored: {dropped} pairs longer than `max_length` (truncation `drop`).", ""]
    lines.append("Pairwise accuracy: the fraction of pairs whose chosen response gets the higher reward (ties count "
                 f"as wrong), measured by `rewardlab train` on its final weights; interval: "
                 f"{facts.interval_method or 'not recorded'}.")
    return lines


_TRANSFORMERS_SNIPPET = (
    "```python",
    "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
    'model = AutoModelForSequenceClassification.from_pretrained("MODEL_DIR")',
    'tokenizer = AutoTokenizer.from_pretrained("MODEL_DIR")',
    'messages = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4."}]',
    'inputs = tokenizer.apply_chat_template(messages, return_tensors="pt", return_dict=True)',
    "reward = model(**inputs).logits[0, 0]",
    "```",
)
"""How plain transformers scores a folder that opens as a sequence-classification model."""


def _seq_cls_lines(config: dict[str, Any]) -> list[str]:
    seq_cls = config.get("seq_cls") or {}
    head = (config.get("head") or {}).get("type")
    if seq_cls.get("loads") and config.get("backbone") == "full":
        return ["The linear head is stored as the sequence-classification `score` layer, so plain transformers "
                "opens the folder directly; its logit is the reward:", "", *_TRANSFORMERS_SNIPPET, "",
                "(rewardlab also adds the special tokens `tokenizer(text)` would add where the chat template has "
                "none.) "
                "A merged copy: `rewardlab export MODEL_DIR --to seq-cls OUT`."]
    if head == "linear":
        return ["Export a standalone `AutoModelForSequenceClassification` folder (LoRA merged, `num_labels=1`, "
                "logits equal the rewards):", "", "```bash", "rewardlab export MODEL_DIR --to seq-cls MODEL_DIR-seqcls",
                "```"]
    reason = seq_cls.get("reason") or "the reward head is an MLP, which a seq-cls `score` layer cannot hold"
    return [f"Not loadable as a plain sequence-classification model: {reason}. Opening it with "
            "`AutoModelForSequenceClassification` raises a size mismatch instead of using a random head. Score it "
            "with rewardlab, or train with `--head linear` for an exportable model."]


def render_model_card(
    config: dict[str, Any], *, name: str, facts: TrainingFacts | None = None, loaded_from: str | None = None
) -> str:
    """The model card text for a saved model described by its `rewardlab_config.json` ``config``."""
    from rewardlab.machine import package_versions

    settings = config.get("settings") or {}
    head = config.get("head") or {}
    lora = config.get("lora")
    base = describe_base(str(config.get("base_model") or "unknown"), loaded_from)
    variant = _variant(settings)
    tags = ["reward-model", "rewardlab"] + ([variant] if variant else [])
    front = ["---", "library_name: rewardlab"]
    if base.hub_id:
        front.append(f"base_model: {_yaml_scalar(base.hub_id)}")
    front.append(f"license: {_yaml_scalar(base.license)}")
    front += ["tags:", *[f"- {tag}" for tag in tags], "---", ""]

    if variant == "grm":
        kind = (f"a GRM reward model (Bradley–Terry reward loss plus the `{settings.get('reg')}` language-model "
                "regularizer on the kept LM head)")
    elif variant == "bt":
        kind = "a Bradley–Terry (BT) reward model"
    else:
        kind = "a reward model"
    body = [f"# {name}", "",
            f"This is {kind}, saved by rewardlab. It gives one number (a reward) to a "
            "conversation ending in an assistant response; a higher reward means a more preferred response.", ""]
    if facts is not None and facts.snapshot:
        body += [f"It is a snapshot saved after optimizer step {facts.steps} of {facts.total_steps}, not the end "
                 "of training.", ""]

    body += ["## Base model", "",
             f"- base model: `{base.reference}`" + (f" ([{base.hub_id}](https://huggingface.co/{base.hub_id}))"
                                                     if base.hub_id and base.hub_id != base.reference else ""),
             f"- license: `{base.license}` ({base.license_note})"]
    if lora:
        body.append(f"- backbone: LoRA adapter (r={lora.get('r')}, alpha={lora.get('alpha')}, dropout="
                    f"{lora.get('dropout')}, on {', '.join(lora.get('targets') or [])}); the base weights are "
                    "loaded from the base model")
    elif settings.get("trainable_top_layers") is not None:
        body.append(f"- backbone: full weights saved; only the top {settings['trainable_top_layers']} decoder layers "
                    "(and the head) were trained")
    else:
        body.append("- backbone: full fine-tune, the whole causal LM is saved (LM head kept)")
    if head.get("type") == "mlp":
        body.append(f"- reward head: MLP hidden {head.get('hidden_size')} → {head.get('mlp_hidden')} → ReLU → 1, "
                    f"dropout {head.get('dropout')}, on the last non-padding token")
    else:
        body.append(f"- reward head: linear {head.get('hidden_size')} → 1 without bias, dropout "
                    f"{head.get('dropout')}, on the last non-padding token")
    body.append("")

    body += ["## Training data", ""]
    data = (facts.data if facts is not None and facts.data else None) or settings.get("data")
    body.append(f"- data: `{data}`" if data else "- data: not recorded (saved outside `rewardlab train`)")
    if facts is not None:
        if facts.train_pairs is not None:
            body.append(f"- training pairs (after rendering): {facts.train_pairs}")
        skipped = sum(facts.skipped.values())
        body.append(f"- pairs skipped at rendering: {skipped}" + (
            f" ({', '.join(f'{k}: {v}' for k, v in sorted(facts.skipped.items()))})" if skipped else ""))
        if facts.steps is not None:
            steps = f"{facts.steps}" + (f" of {facts.total_steps}" if facts.total_steps is not None else "")
            per = f", {facts.pairs_per_step} pairs each" if facts.pairs_per_step else ""
            seen = f" ({facts.steps * facts.pairs_per_step} pairs seen)" if facts.pairs_per_step else ""
            body.append(f"- optimizer steps: {steps}{per}{seen}")
        if facts.num_processes and facts.num_processes > 1:
            body.append(f"- processes: {facts.num_processes} (data parallel)")
    else:
        body.append("- pair counts: not recorded (saved outside `rewardlab train`)")
    if settings.get("max_length") is not None:
        body.append(f"- rendering: chat template, at most {settings['max_length']} tokens, over-length pairs "
                    f"`{settings.get('truncation', 'drop')}`")
    body.append("")

    body += ["## Loss", ""]
    if "loss" in settings or "reg" in settings:
        body += ["`total = (1 − alpha) · reward_loss + alpha · regularizer`", "",
                 "| setting | value |", "|---|---|",
                 f"| reward loss (`loss`) | `{_fmt(settings.get('loss'))}` |",
                 f"| regularizer (`reg`) | `{_fmt(settings.get('reg'))}` |",
                 f"| alpha | {_fmt(settings.get('alpha'))} |",
                 f"| beta | {_fmt(settings.get('beta'))} |",
                 f"| head | `{_fmt(head.get('type') or settings.get('head'))}` |",
                 f"| LoRA | {_fmt(bool(lora))} |",
                 f"| trainable top layers | {_fmt(settings.get('trainable_top_layers'), 'all')} |"]
        if facts is not None:
            body.append(f"| learning rate | {_fmt(facts.lr)} ({_fmt(facts.lr_scheduler_type)}) |")
            if facts.epochs is not None:
                body.append(f"| epochs | {_fmt(facts.epochs)} |")
        body += [f"| seed | {_fmt(settings.get('seed'))} |", ""]
    else:
        body += ["Not recorded: this model was saved with settings that name no loss.", ""]

    body += ["## Evaluation", "", *_accuracy_line(facts), ""]

    body += ["## Use", "",
             "`MODEL_DIR` is this folder; from the Hub, download it first: "
             "`hf download REPO_ID --local-dir MODEL_DIR`.",
             "", "With rewardlab (`pip install rewardlab`):", "", "```bash",
             'rewardlab score MODEL_DIR --prompt "What is 2 + 2?" --response "4."',
             "rewardlab score MODEL_DIR --data pairs.jsonl --out scores.jsonl",
             "rewardlab serve MODEL_DIR   # an HTTP reward server", "```", "", "```python",
             "from rewardlab.scoring import RewardScorer", "",
             'scorer = RewardScorer.from_pretrained("MODEL_DIR")',
             'prompt = [{"role": "user", "content": "What is 2 + 2?"}]',
             'print(scorer.score_conversations([prompt], ["4."])[0])', "",
             "from rewardlab.models.persistence import load_reward_model",
             'model, tokenizer, settings = load_reward_model("MODEL_DIR")  # strict: never a random head', "```", "",
             "With plain transformers:", "", *_seq_cls_lines(config), ""]

    versions = package_versions(("torch", "transformers"))
    saved_by = config.get("rewardlab_version") or versions["rewardlab"]
    record = ("; the run's losses and timings in `metrics.json` and `loss.png`."
              if facts is not None and not facts.snapshot else ".")
    body += ["## Versions", "",
             f"Saved by rewardlab {saved_by} (torch {versions['torch']}, transformers {versions['transformers']}). "
             f"The training configuration is in `rewardlab_config.json`{record}", ""]
    return "\n".join(front + body)


def render_export_card(source_card: str | None, *, source: str, name: str) -> str:
    """The card of a `rewardlab export --to seq-cls` folder: how plain transformers loads it, then the
    source model's card (its training facts still hold; its rewardlab loading lines apply to the source)."""
    front: list[str] = []
    body = source_card or ""
    if body.startswith("---\n") and "\n---\n" in body[4:]:
        end = body.index("\n---\n", 4)
        front = [line for line in body[4:end].splitlines() if not line.startswith(("library_name:", "pipeline_tag:"))]
        body = body[end + 5:]
    header = ["---", "library_name: transformers", "pipeline_tag: text-classification", *front, "---", ""]
    intro = [f"# {name}", "",
             f"This folder is the `AutoModelForSequenceClassification` export (`rewardlab export --to seq-cls`) of "
             f"the rewardlab reward model `{source}`: LoRA merged, `num_labels=1`, the linear reward head as the "
             "`score` layer. Its logit is the source model's reward, and plain transformers loads it:", "",
             *_TRANSFORMERS_SNIPPET, ""]
    if source_card is None:
        return "\n".join(header + intro + ["The source folder had no model card.", ""])
    demoted, in_code = [], False
    for line in body.lstrip("\n").splitlines():  # under this card's own heading: the source's title goes,
        in_code ^= line.startswith("```")        # and its sections move one level down
        if not in_code and line.startswith("# "):
            continue
        demoted.append("#" + line if not in_code and line.startswith("#") else line)
    body = "\n".join(demoted).lstrip("\n") + "\n"
    return "\n".join(header + intro + [f"## The source model `{source}`", "",
                                       "Below is the source model's card. Its rewardlab commands load the source "
                                       "folder, not this export.", ""]) + "\n" + body
