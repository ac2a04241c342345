"""The one rendering path: template, special tokens, response boundary, truncation."""

from __future__ import annotations

import copy

import pytest
from transformers import PreTrainedTokenizerFast

from rewardlab.data.dialogue import parse_dialogue
from rewardlab.data.pair import PreferencePair
from rewardlab.data.render import (
    Rendered,
    conversation_text,
    plain_text,
    prompt_text,
    render,
    render_batch,
    render_pair,
    render_pairs,
    render_prompt_ids,
    render_text,
    render_texts,
    special_tokens,
)
from rewardlab.data.synthetic import generate
from rewardlab.train.batches import collate_pairs, tokenize_pairs

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
HISTORY = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Please write a short poem about the sea."},
    {"role": "assistant", "content": "The sea and the sky and the wind."},
    {"role": "user", "content": "What is the capital of France?"},
]


def test_render_is_template_text_tokenized_as_the_tokenizer_does(tiny_tokenizer):
    rendered = render(tiny_tokenizer, HISTORY, "Paris.", max_length=512)
    text = conversation_text(tiny_tokenizer, HISTORY, "Paris.")
    assert text == tiny_tokenizer.apply_chat_template(
        [*HISTORY, {"role": "assistant", "content": "Paris."}], tokenize=False
    )
    # tiny-random's tokenizer adds no special tokens of its own: the ids are the text's
    assert rendered.input_ids == tiny_tokenizer(text)["input_ids"]
    assert rendered.input_ids == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert rendered.input_ids[: rendered.response_start] == render_prompt_ids(tiny_tokenizer, HISTORY)
    assert tiny_tokenizer.decode(rendered.response_ids).startswith("Paris.")
    assert "Paris." not in tiny_tokenizer.decode(rendered.input_ids[: rendered.response_start])
    assert len(rendered) == len(rendered.input_ids)


def test_server_text_path_gives_the_same_ids_as_the_conversation_path(tiny_tokenizer, bos_tokenizer):
    for tokenizer in (tiny_tokenizer, bos_tokenizer):
        rendered = render(tokenizer, HISTORY, "Paris.", max_length=512)
        assert render_text(tokenizer, conversation_text(tokenizer, HISTORY, "Paris.")) == rendered.input_ids


def test_template_that_writes_bos_gets_exactly_one_bos(bos_tokenizer):
    text = conversation_text(bos_tokenizer, QUESTION, "Paris")
    bos = bos_tokenizer.bos_token_id
    # Precondition: the tokenizer's default call would add a second BOS.
    assert bos_tokenizer(text)["input_ids"][:2] == [bos, bos]
    rendered = render(bos_tokenizer, QUESTION, "Paris", max_length=512)
    assert rendered.input_ids[0] == bos
    assert rendered.input_ids.count(bos) == 1
    assert render_prompt_ids(bos_tokenizer, QUESTION).count(bos) == 1
    assert render_text(bos_tokenizer, text).count(bos) == 1
    # what the tokenizer's own call gives, less the second BOS
    assert rendered.input_ids == bos_tokenizer(text)["input_ids"][1:]
    assert special_tokens(bos_tokenizer) == ([bos], [])
    assert bos_tokenizer.decode(rendered.response_ids) == "Paris</s>\n"


def test_response_start_falls_back_to_longest_common_prefix(merging_tokenizer):
    prompt_ids = render_prompt_ids(merging_tokenizer, QUESTION)
    rendered = render(merging_tokenizer, QUESTION, "Paris", max_length=512)
    # Precondition: the prompt's last token (a lone space) is merged into " Paris" in the full text.
    assert rendered.input_ids[: len(prompt_ids)] != prompt_ids
    assert rendered.response_start == len(prompt_ids) - 1
    assert rendered.input_ids[: rendered.response_start] == prompt_ids[: rendered.response_start]
    assert merging_tokenizer.decode(rendered.response_ids) == " Paris</s>"


def test_tokenizer_without_template_uses_plain_format(plain_tokenizer):
    assert prompt_text(plain_tokenizer, HISTORY) == (
        "System: You are a helpful assistant.\n\nHuman: Please write a short poem about the sea.\n\n"
        "Assistant: The sea and the sky and the wind.\n\nHuman: What is the capital of France?\n\nAssistant:"
    )
    text = conversation_text(plain_tokenizer, QUESTION, "Paris.")
    assert text == "Human: What is the capital of France?\n\nAssistant: Paris."
    assert parse_dialogue(text) == [*QUESTION, {"role": "assistant", "content": "Paris."}]
    assert plain_text(QUESTION) == "Human: What is the capital of France?"
    assert plain_tokenizer.decode(render(plain_tokenizer, QUESTION, "Paris.", max_length=512).response_ids) == " Paris."


def test_drop_returns_none_only_when_too_long(tiny_tokenizer):
    full = render(tiny_tokenizer, HISTORY, "Paris.", max_length=10_000)
    assert render(tiny_tokenizer, HISTORY, "Paris.", max_length=len(full)) == full
    assert render(tiny_tokenizer, HISTORY, "Paris.", max_length=len(full) - 1) is None
    assert render(tiny_tokenizer, HISTORY, "Paris.", max_length=len(full) - 1, truncation="drop") is None


def test_prompt_left_keeps_bos_and_whole_response(bos_tokenizer):
    full = render(bos_tokenizer, HISTORY, "Paris is the capital.", max_length=10_000)
    response_length = len(full) - full.response_start
    max_length = response_length + 6
    cut = render(bos_tokenizer, HISTORY, "Paris is the capital.", max_length=max_length, truncation="prompt-left")
    assert isinstance(cut, Rendered)
    assert len(cut) == max_length
    assert cut.input_ids[0] == bos_tokenizer.bos_token_id
    assert cut.response_ids == full.response_ids
    assert cut.response_start == 6
    # The newest prompt tokens survive, the oldest are gone.
    assert cut.input_ids[1:6] == full.input_ids[full.response_start - 5 : full.response_start]
    # Response (plus BOS) fills the budget exactly: no prompt tokens, still fits.
    tight = render(
        bos_tokenizer, HISTORY, "Paris is the capital.", max_length=response_length + 1, truncation="prompt-left"
    )
    assert tight is not None and tight.response_start == 1
    assert (
        render(bos_tokenizer, HISTORY, "Paris is the capital.", max_length=response_length, truncation="prompt-left")
        is None
    )


def test_prompt_left_leaves_short_examples_untouched(tiny_tokenizer):
    full = render(tiny_tokenizer, QUESTION, "Paris.", max_length=512)
    assert render(tiny_tokenizer, QUESTION, "Paris.", max_length=512, truncation="prompt-left") == full


def test_bad_arguments_are_clear_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="truncation must be one of"):
        render(tiny_tokenizer, QUESTION, "Paris.", max_length=64, truncation="right")
    with pytest.raises(ValueError, match="max_length"):
        render(tiny_tokenizer, QUESTION, "Paris.", max_length=0)
    with pytest.raises(TypeError, match="prompt must be a sequence of chat messages"):
        render(tiny_tokenizer, "What is the capital of France?", "Paris.", max_length=64)
    with pytest.raises(TypeError, match=r"prompt\[0\]"):
        render(tiny_tokenizer, [{"role": "user"}], "Paris.", max_length=64)
    with pytest.raises(TypeError, match="response must be a string"):
        render(tiny_tokenizer, QUESTION, None, max_length=64)


def test_chat_template_errors_name_the_roles(no_system_tokenizer):
    with pytest.raises(ValueError, match=r"cannot render messages with roles \[system, user\].*no system role"):
        render(no_system_tokenizer, HISTORY[:1] + QUESTION, "Paris.", max_length=64)
    assert render(no_system_tokenizer, QUESTION, "Paris.", max_length=64) is not None


def test_pair_helpers_agree_with_single_renders(tiny_tokenizer):
    pairs = generate("id", n=12, seed=5)
    batched = render_pairs(tiny_tokenizer, pairs, max_length=256)
    for pair, both in zip(pairs, batched):
        assert both == render_pair(tiny_tokenizer, pair, max_length=256)
        assert both[0] == render(tiny_tokenizer, pair.prompt, pair.chosen, max_length=256)
        assert both[1] == render(tiny_tokenizer, pair.prompt, pair.rejected, max_length=256)
    flat = render_batch(
        tiny_tokenizer, [p.prompt for p in pairs], [p.chosen for p in pairs], max_length=256
    )
    assert flat == [both[0] for both in batched]


def test_render_pair_is_none_when_either_side_does_not_fit(tiny_tokenizer):
    pair = PreferencePair(prompt=tuple(QUESTION), chosen="Paris.", rejected="Lyon. " * 40)
    chosen_only = render(tiny_tokenizer, QUESTION, "Paris.", max_length=512)
    assert render_pair(tiny_tokenizer, pair, max_length=len(chosen_only) + 2) is None
    assert render_pairs(tiny_tokenizer, [pair], max_length=len(chosen_only) + 2) == [None]
    assert render_pair(tiny_tokenizer, pair, max_length=512) is not None


@pytest.mark.slow
def test_real_smollm2_tokenizer_renders_synthetic_pairs_compactly():
    from rewardlab.models.registry import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    rendered = render(tokenizer, QUESTION, "Paris.", max_length=512)
    text = conversation_text(tokenizer, QUESTION, "Paris.")
    assert rendered.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert rendered.input_ids[: rendered.response_start] == render_prompt_ids(tokenizer, QUESTION)
    assert tokenizer.decode(rendered.response_ids) == "Paris.<|im_end|>\n"
    assert rendered.input_ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert rendered.input_ids[1] != rendered.input_ids[0]
    # The synthetic data stays short: each prompt and response well under 60 tokens.
    for split in ("id", "ood"):
        for pair in generate(split, n=200, seed=0):
            assert len(tokenizer(pair.prompt[-1]["content"])["input_ids"]) < 40
            assert len(tokenizer(pair.chosen)["input_ids"]) < 40
            assert len(tokenizer(pair.rejected)["input_ids"]) < 40


# --- special tokens exactly where the tokenizer's own call puts them (issue 11, item 4) ---------------


def _configured(base: PreTrainedTokenizerFast, chat_template: str | None = None, **flags) -> PreTrainedTokenizerFast:
    """``base``'s vocabulary with its own ``add_bos_token`` / ``add_eos_token`` flags (they set the post-processor)."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=copy.deepcopy(base.backend_tokenizer), bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        clean_up_tokenization_spaces=False, **flags,
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def test_tokenizer_with_bos_and_no_template_gets_its_bos(plain_tokenizer):
    """A base Llama/Mistral/Gemma checkpoint: no chat template, BOS added by its encoding."""
    text = conversation_text(plain_tokenizer, QUESTION, "Paris.")
    rendered = render(plain_tokenizer, QUESTION, "Paris.", max_length=512)
    bos = plain_tokenizer.bos_token_id
    assert rendered.input_ids == plain_tokenizer(text)["input_ids"]
    assert rendered.input_ids[0] == bos and rendered.input_ids.count(bos) == 1
    prompt_ids = render_prompt_ids(plain_tokenizer, QUESTION)
    assert prompt_ids[0] == bos and rendered.input_ids[: rendered.response_start] == prompt_ids
    assert plain_tokenizer.decode(rendered.response_ids) == " Paris."
    assert render_text(plain_tokenizer, text) == rendered.input_ids  # the server's text path agrees
    assert render_text(plain_tokenizer, plain_tokenizer.decode(rendered.input_ids)) == rendered.input_ids  # not doubled


def test_tokenizer_with_add_bos_false_gets_no_bos(plain_tokenizer, bos_tokenizer):
    no_bos = _configured(plain_tokenizer, add_bos_token=False)
    assert special_tokens(no_bos) == ([], [])
    text = conversation_text(no_bos, QUESTION, "Paris.")
    rendered = render(no_bos, QUESTION, "Paris.", max_length=512)
    assert rendered.input_ids == no_bos(text)["input_ids"] == no_bos(text, add_special_tokens=False)["input_ids"]
    assert no_bos.bos_token_id not in rendered.input_ids
    # with a template that writes BOS itself, that one BOS stays
    templated = _configured(plain_tokenizer, bos_tokenizer.chat_template, add_bos_token=False)
    rendered = render(templated, QUESTION, "Paris.", max_length=512)
    assert rendered.input_ids[0] == templated.bos_token_id and rendered.input_ids.count(templated.bos_token_id) == 1


def test_tokenizer_that_adds_eos_too_ends_the_conversation_with_it(plain_tokenizer):
    both = _configured(plain_tokenizer, add_bos_token=True, add_eos_token=True)
    bos, eos = both.bos_token_id, both.eos_token_id
    assert special_tokens(both) == ([bos], [eos])
    text = conversation_text(both, QUESTION, "Paris.")
    rendered = render(both, QUESTION, "Paris.", max_length=512)
    assert rendered.input_ids == both(text)["input_ids"]
    assert rendered.input_ids[0] == bos and rendered.input_ids[-1] == eos and rendered.input_ids.count(eos) == 1
    # the prompt alone ends where the response begins: no EOS after it; the response is scored with its EOS
    prompt_ids = render_prompt_ids(both, QUESTION)
    assert prompt_ids == both(prompt_text(both, QUESTION))["input_ids"][:-1]
    assert rendered.input_ids[: rendered.response_start] == prompt_ids
    assert rendered.response_ids[-1] == eos and both.decode(rendered.response_ids) == " Paris.</s>"
    assert render_texts(both, [text, text]) == [rendered.input_ids] * 2
    # prompt-left truncation keeps the BOS in front and the whole response with its EOS
    long = render(both, HISTORY, "Paris.", max_length=512)
    cut = render(both, HISTORY, "Paris.", max_length=len(rendered), truncation="prompt-left")
    assert len(cut) == len(rendered) < len(long)
    assert cut.input_ids[0] == bos and cut.response_ids == long.response_ids and cut.input_ids[-1] == eos


def test_template_that_writes_eos_at_the_end_is_not_given_a_second_one(plain_tokenizer):
    ends_with_eos = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
    both = _configured(plain_tokenizer, ends_with_eos + "{% if add_generation_prompt %}assistant:{% endif %}",
                       add_bos_token=True, add_eos_token=True)
    rendered = render(both, QUESTION, "Paris.", max_length=512)
    assert rendered.input_ids == both(conversation_text(both, QUESTION, "Paris."))["input_ids"][:-1]
    assert rendered.input_ids[-1] == both.eos_token_id and rendered.input_ids[-2] != both.eos_token_id


def test_training_batches_read_the_reward_at_the_eos_and_score_it(plain_tokenizer):
    """The batch builder's masks follow the rendering: last attended token and response tokens include the EOS."""
    both = _configured(plain_tokenizer, add_bos_token=True, add_eos_token=True)
    pairs = [PreferencePair(prompt=tuple(QUESTION), chosen="Paris.", rejected="It is Lyon, I think.")]
    (item,) = tokenize_pairs(both, pairs, max_length=512, truncation="drop")
    batch = collate_pairs([item], both.pad_token_id)
    sides = ((item.chosen_ids, item.chosen_start), (item.rejected_ids, item.rejected_start))
    for row, (ids, start) in enumerate(sides):
        last = int(batch.attention_mask[row].nonzero().max())
        assert batch.input_ids[row, last] == both.eos_token_id and batch.input_ids[row, 0] == both.bos_token_id
        response = batch.input_ids[row][batch.response_mask[row].bool()].tolist()
        assert response == ids[start:] and response[-1] == both.eos_token_id
