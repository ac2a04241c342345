"""Running a span of the decoder's layers: the two halves of a split pass equal one full pass."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from rewardlab.models.layers import decoder_layers, decoder_span, final_norm, frozen_lower_layer_count, has_dropout
from rewardlab.models.lora import freeze_lower_layers
from rewardlab.models.packed import pack_groups, packed_hidden_states
from rewardlab.models.reward_model import RewardModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_backbone(model_type: str, layers: int = 4, **extra) -> torch.nn.Module:
    config = AutoConfig.for_model(
        model_type, vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, **extra,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32).eval()


def sample_row():
    g = torch.Generator().manual_seed(5)
    prompt = torch.randint(3, 256, (17,), generator=g).tolist()
    groups = [[prompt + torch.randint(3, 256, (n,), generator=g).tolist() for n in (6, 9)],
              [torch.randint(3, 256, (11,), generator=g).tolist()]]
    return pack_groups(groups, [[17, 17], [3]])


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "mistral", "qwen3"])
@pytest.mark.parametrize("split", [1, 3])
def test_lower_then_upper_layers_equal_one_full_pass(model_type, split):
    extra = {"sliding_window": None} if model_type == "mistral" else {}
    causal_lm = tiny_backbone(model_type, **extra)
    packed = sample_row()
    with torch.no_grad():
        full = packed_hidden_states(causal_lm, packed)
        lower = packed_hidden_states(causal_lm, packed, to_layer=split)
        upper = packed_hidden_states(causal_lm, packed, from_layer=split, start_states=lower)
    assert not torch.allclose(lower, full, atol=1e-3)  # the split point is really inside the stack
    torch.testing.assert_close(upper, full, atol=1e-5, rtol=1e-5)


def test_span_restores_the_decoder_even_after_an_error():
    causal_lm = tiny_backbone("llama")
    decoder = causal_lm.get_decoder()
    layers, norm = decoder_layers(decoder), final_norm(decoder)
    states = torch.zeros(1, 5, 64)
    with pytest.raises(RuntimeError, match="inside"):
        with decoder_span(decoder, 1, 2, apply_final_norm=False, start_states=states):
            inside = decoder_layers(decoder)
            # the list keeps its length (layers keep their index); only layer 1 is the real one
            assert len(inside) == len(layers) and inside[1] is layers[1] and inside[0] is not layers[0]
            assert isinstance(final_norm(decoder), torch.nn.Identity)
            raise RuntimeError("inside")
    assert decoder_layers(decoder) is layers and final_norm(decoder) is norm
    with pytest.raises(ValueError, match="start_states"):
        with decoder_span(decoder, 1, 2, apply_final_norm=False):
            pass
    with pytest.raises(ValueError, match="not within"):
        with decoder_span(decoder, 0, 5, apply_final_norm=False):
            pass


def test_start_states_and_from_layer_go_together():
    causal_lm = tiny_backbone("llama")
    packed = sample_row()
    with pytest.raises(ValueError, match="start_states"):
        packed_hidden_states(causal_lm, packed, from_layer=2)
    with pytest.raises(ValueError, match="start_states"):
        packed_hidden_states(causal_lm, packed, start_states=torch.zeros(packed.num_tokens, 64))


def test_frozen_lower_layer_count_follows_what_trains():
    model = RewardModel(tiny_backbone("llama"), "linear")
    assert frozen_lower_layer_count(model.causal_lm) == 0  # everything trains
    freeze_lower_layers(model, 1)
    assert frozen_lower_layer_count(model.causal_lm) == 3
    freeze_lower_layers(model, 4)
    assert frozen_lower_layer_count(model.causal_lm) == 4 - 4
    freeze_lower_layers(model, 2)
    model.causal_lm.get_input_embeddings().weight.requires_grad_(True)
    assert frozen_lower_layer_count(model.causal_lm) == 0  # trained embeddings change every layer's output


def test_has_dropout_reads_the_config():
    assert not has_dropout(tiny_backbone("llama"))
    assert has_dropout(tiny_backbone("llama", attention_dropout=0.1))
