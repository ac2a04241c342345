"""The architecture matrix: every causal-LM family rewardlab claims, on a small random config.

Each family is saved as a Hugging Face folder with the tiny-random tokenizer and loaded through
`registry.load_backbone`, as a user's checkpoint would be. Settings are chosen so that what makes
a family different actually matters: sliding windows shorter than the conversations, strong logit
scaling and soft-capping, Granite's multipliers. For every family:

(a) rewards do not depend on the padding side;
(b) the regularizer's log-probs (what the training step uses for SFT/DPO) equal the log-softmax of
    the model's own ``forward().logits``, scaling and soft-capping included;
(c) packed rewards, log-probs and the frozen-layer split equal the padded path where packing is
    supported; elsewhere the reason is stated and scoring falls back to padded batches;
(d) save → load gives the same rewards, and the seq-cls export gives them too (or, for a family
    transformers has no seq-cls class for, is refused with a message).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from rewardlab.data.render import render_batch
from rewardlab.models.packed import pack_groups, packed_hidden_states, packing_unsupported_reason
from rewardlab.models.persistence import CheckpointError, export_seq_cls, load_reward_model, save_reward_model
from rewardlab.models.registry import load_backbone, load_tokenizer
from rewardlab.models.forward import TESTED_MODEL_TYPES, logit_transform
from rewardlab.models.reward_model import RewardModel
from rewardlab.scoring import RewardScorer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WINDOW = 6  # shorter than every rendered conversation below
ALTERNATING = ["sliding_attention", "full_attention"]

# model_type → config overrides on top of the common tiny shape (2 layers, hidden 64, 4/2 heads).
FAMILIES: dict[str, dict] = {
    "llama": {},
    "mistral": {"sliding_window": WINDOW},
    "ministral": {"head_dim": 16, "sliding_window": WINDOW, "layer_types": ALTERNATING},
    "qwen2": {"use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1},
    "qwen3": {},
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16, "sliding_window": WINDOW, "final_logit_softcapping": 0.3,
               "attn_logit_softcapping": 2.0},
    "gemma3_text": {"head_dim": 16, "sliding_window": WINDOW, "layer_types": ALTERNATING,
                    "final_logit_softcapping": 0.3},
    "phi3": {"sliding_window": WINDOW},
    "granite": {"logits_scaling": 4.0, "embedding_multiplier": 3.0, "residual_multiplier": 0.5,
                "attention_multiplier": 0.2},
    "cohere": {"logit_scale": 0.25},
    "cohere2": {"logit_scale": 0.25, "sliding_window": WINDOW, "layer_types": ALTERNATING},
    "olmo2": {},
    "olmo3": {"sliding_window": WINDOW, "layer_types": ALTERNATING},
}
# Families whose forward changes the LM head's output (the log-prob check must see the difference).
TRANSFORMED = {"gemma2", "gemma3_text", "granite", "cohere", "cohere2"}
NOT_PACKABLE = {"gemma2": "soft-caps attention logits"}
NO_SEQ_CLS = {"granite", "cohere", "cohere2"}

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
OTHER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour of the sky."}]
CONVERSATIONS = [(PROMPT, "Paris is the capital."), (PROMPT, "Lyon, I think."), (OTHER, "Blue.")]


def test_matrix_covers_the_tested_families() -> None:
    assert set(FAMILIES) == set(TESTED_MODEL_TYPES)


def _build_folder(model_type: str, folder: Path) -> None:
    """A random-initialised checkpoint of the family with the tiny-random tokenizer, saved like a hub model."""
    tokenizer = load_tokenizer("tiny-random")
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        **FAMILIES[model_type],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with torch.no_grad():  # larger weights than the default init, so logits are far from uniform
            model.get_output_embeddings().weight.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(model_type, folder, reward model with a linear head, tokenizer, rendered conversations)."""
    model_type = request.param
    folder = tmp_path_factory.mktemp(model_type) / "base"
    _build_folder(model_type, folder)
    backbone, tokenizer = load_backbone(str(folder))
    assert backbone.config.model_type == model_type
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = RewardModel(backbone, "linear")
        with torch.no_grad():
            model.head.layers[0].weight.normal_(0.0, 1.0)
    rendered = render_batch(tokenizer, [c[0] for c in CONVERSATIONS], [c[1] for c in CONVERSATIONS], max_length=256)
    assert all(r is not None and len(r) > WINDOW for r in rendered)
    return model_type, folder, model.eval(), tokenizer, rendered


def _padded(rendered, pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and response mask with padding on ``side``."""
    longest = max(len(r) for r in rendered)
    ids = torch.full((len(rendered), longest), pad_id, dtype=torch.long)
    attention, response = torch.zeros_like(ids), torch.zeros_like(ids)
    for row, r in enumerate(rendered):
        offset = longest - len(r) if side == "left" else 0
        ids[row, offset:offset + len(r)] = torch.tensor(r.input_ids)
        attention[row, offset:offset + len(r)] = 1
        response[row, offset + r.response_start:offset + len(r)] = 1
    return ids, attention, response


def _own_forward_logprobs(causal_lm, rendered) -> torch.Tensor:
    """Σ log_softmax(forward().logits) over each response, each conversation run alone (no padding)."""
    totals = []
    for r in rendered:
        ids = torch.tensor([r.input_ids])
        logits = causal_lm(input_ids=ids, use_cache=False).logits.float()[0]
        logps = F.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        totals.append(logps[r.response_start - 1:].sum())
    return torch.stack(totals)


def _rewards_alone(model: RewardModel, rendered) -> torch.Tensor:
    return torch.cat([model(torch.tensor([r.input_ids]), torch.ones(1, len(r), dtype=torch.long)).rewards
                      for r in rendered])


@torch.no_grad()
def test_a_rewards_do_not_depend_on_padding_side(family) -> None:
    _, _, model, tokenizer, rendered = family
    alone = _rewards_alone(model, rendered)
    for side in ("right", "left"):
        ids, attention, _ = _padded(rendered, tokenizer.pad_token_id, side)
        torch.testing.assert_close(model(ids, attention).rewards, alone, atol=1e-5, rtol=1e-5, msg=side)
    assert alone.unique().numel() == len(rendered)


@torch.no_grad()
def test_b_regularizer_logprobs_equal_the_models_own_logits(family) -> None:
    model_type, _, model, tokenizer, rendered = family
    reference = _own_forward_logprobs(model.causal_lm, rendered)
    for side in ("right", "left"):
        ids, attention, response = _padded(rendered, tokenizer.pad_token_id, side)
        hidden = model(ids, attention).hidden_states
        logps = model.response_logprobs(hidden, ids, response)
        torch.testing.assert_close(logps, reference, atol=1e-4, rtol=1e-5, msg=side)
    # The check has teeth: the bare LM head gives other log-probs exactly for the families that transform.
    ids, attention, response = _padded(rendered, tokenizer.pad_token_id, "right")
    hidden = model(ids, attention).hidden_states
    bare = F.log_softmax(model.causal_lm.get_output_embeddings()(hidden[:, :-1]).float(), dim=-1)
    bare = (bare.gather(-1, ids[:, 1:, None]).squeeze(-1) * response[:, 1:]).sum(-1)
    transform = logit_transform(model.causal_lm)
    assert (transform.multiplier != 1.0 or transform.softcap is not None) == (model_type in TRANSFORMED)
    assert torch.allclose(bare, reference, atol=1e-3) == (model_type not in TRANSFORMED)


@torch.no_grad()
def test_c_packed_path_equals_padded_or_falls_back_with_a_reason(family) -> None:
    model_type, _, model, tokenizer, rendered = family
    reason = packing_unsupported_reason(model.causal_lm)
    alone = _rewards_alone(model, rendered)
    scorer = RewardScorer(model, tokenizer, packing=True, batch_size=8)
    scored = torch.tensor(scorer.score_token_ids([r.input_ids for r in rendered]))
    torch.testing.assert_close(scored, alone, atol=1e-4, rtol=1e-5)
    if model_type in NOT_PACKABLE:
        assert reason is not None and NOT_PACKABLE[model_type] in reason
        assert scorer.packing is False  # the stated fallback: padded batches, same rewards
        return
    assert reason is None and scorer.packing is True
    packed = pack_groups([[rendered[0].input_ids, rendered[1].input_ids], [rendered[2].input_ids]],
                         [[rendered[0].response_start, rendered[1].response_start], [rendered[2].response_start]])
    assert packed.num_tokens < sum(len(r) for r in rendered)  # the shared prompt ran once
    out = model.forward_packed(packed)
    torch.testing.assert_close(out.rewards, alone, atol=1e-4, rtol=1e-5)
    logps = model.packed_response_logprobs(out.hidden_states, packed)
    torch.testing.assert_close(logps, _own_forward_logprobs(model.causal_lm, rendered), atol=1e-4, rtol=1e-5)
    # the frozen-layer split (trainable top layers): lower then upper layers equal one full pass
    lower = packed_hidden_states(model.causal_lm, packed, to_layer=1)
    upper = packed_hidden_states(model.causal_lm, packed, from_layer=1, start_states=lower)
    torch.testing.assert_close(upper, out.hidden_states, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_d_save_load_export_round_trip_gives_the_same_rewards(family, tmp_path: Path) -> None:
    model_type, _, model, tokenizer, rendered = family
    expected = _rewards_alone(model, rendered)
    save_reward_model(model, tokenizer, tmp_path / "rm", {"max_length": 256, "truncation": "drop"})
    loaded, loaded_tokenizer, _ = load_reward_model(tmp_path / "rm")
    assert type(loaded.causal_lm) is type(model.causal_lm)
    torch.testing.assert_close(_rewards_alone(loaded, rendered), expected, atol=1e-6, rtol=1e-6)
    if model_type in NO_SEQ_CLS:
        with pytest.raises(CheckpointError, match="no sequence-classification counterpart"):
            export_seq_cls(tmp_path / "rm", tmp_path / "seq-cls")
        return
    export_seq_cls(tmp_path / "rm", tmp_path / "seq-cls")
    seq_cls = AutoModelForSequenceClassification.from_pretrained(tmp_path / "seq-cls").eval()
    ids, attention, _ = _padded(rendered, loaded_tokenizer.pad_token_id, "right")
    torch.testing.assert_close(seq_cls(input_ids=ids, attention_mask=attention).logits[:, 0], expected,
                               atol=1e-4, rtol=1e-5)


def test_unpackable_family_trains_on_padded_batches_and_says_so(tmp_path: Path) -> None:
    from rewardlab.train.config import TrainConfig
    from rewardlab.train.loop import train

    _build_folder("gemma2", tmp_path / "gemma2")
    messages: list[str] = []
    config = TrainConfig(model=str(tmp_path / "gemma2"), data="synthetic:id?n=8&seed=0", output=str(tmp_path / "run"),
                         max_steps=1, batch_size=2, max_length=256, save_steps=0, progress=False, packing=True)
    train(config, echo=messages.append)
    assert any("packing unavailable (the model soft-caps attention logits" in m for m in messages), messages
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]


def _save_random(folder: Path, model_type: str, **overrides) -> None:
    tokenizer = load_tokenizer("tiny-random")
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  **overrides)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_untested_family_with_an_unknown_logit_transform_is_refused_at_load(tmp_path: Path) -> None:
    from rewardlab.models.registry import ModelLoadError

    # RecurrentGemma soft-caps its logits under a name (logits_soft_cap) rewardlab does not apply.
    _save_random(tmp_path / "rg", "recurrent_gemma", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=16, lru_width=32, logits_soft_cap=0.5,
                 attention_window_size=16, block_types=["recurrent", "attention"])
    with pytest.raises(ModelLoadError, match=r"recurrent_gemma.*forward\(\) logits differ.*Tested families: llama"):
        load_backbone(str(tmp_path / "rg"))


def test_untested_family_that_agrees_with_its_own_forward_loads_and_scores_unpacked(tmp_path: Path) -> None:
    assert "starcoder2" not in TESTED_MODEL_TYPES
    _save_random(tmp_path / "sc2", "starcoder2", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1)
    backbone, tokenizer = load_backbone(str(tmp_path / "sc2"))
    model = RewardModel(backbone, "linear").eval()
    assert "not one of the tested families" in packing_unsupported_reason(backbone)
    rendered = render_batch(tokenizer, [c[0] for c in CONVERSATIONS], [c[1] for c in CONVERSATIONS], max_length=256)
    with torch.no_grad():
        scored = RewardScorer(model, tokenizer, packing=True).score_token_ids([r.input_ids for r in rendered])
        torch.testing.assert_close(torch.tensor(scored), _rewards_alone(model, rendered), atol=1e-5, rtol=1e-5)
