"""Length policy of the server: truncate keeps the end of a text, reject names the text."""

from __future__ import annotations

import pytest

from rewardlab.data.render import conversation_text, render
from rewardlab.scoring import RewardScorer
from rewardlab.serve.encoding import encode_conversations, encode_texts
from rewardlab.serve.protocol import Conversation, RequestError

LONG_PROMPT = "Tell me everything about the history of the river and the town that grew beside it. " * 6


def rendered(scorer: RewardScorer, prompt: str, response: str) -> str:
    return conversation_text(scorer.tokenizer, [{"role": "user", "content": prompt}], response)


def test_short_texts_are_untouched(tiny_scorer: RewardScorer) -> None:
    texts = [rendered(tiny_scorer, "hi", "hello"), rendered(tiny_scorer, "2+2?", "4")]
    batch = encode_texts(tiny_scorer.tokenizer, texts, max_tokens=64, overlength="truncate")
    assert batch.token_ids == [tiny_scorer.encode_text(t) for t in texts]
    assert batch.truncated == [] and batch.truncated_flags == [False, False]


def test_truncate_keeps_the_leading_bos_and_the_last_tokens(tiny_scorer: RewardScorer) -> None:
    text = rendered(tiny_scorer, LONG_PROMPT, "The river is old.")
    full = tiny_scorer.encode_text(text)
    assert len(full) > 20 and full[0] == tiny_scorer.tokenizer.bos_token_id
    batch = encode_texts(tiny_scorer.tokenizer, ["short", text], max_tokens=20, overlength="truncate")
    assert batch.truncated == [1] and batch.truncated_flags == [False, True]
    assert batch.token_ids[1] == full[:1] + full[-19:]
    assert len(batch.token_ids[1]) == 20


def test_truncate_without_bos_keeps_exactly_the_tail(tiny_scorer: RewardScorer) -> None:
    text = "plain words without any template " * 10
    full = tiny_scorer.encode_text(text)
    assert full[0] != tiny_scorer.tokenizer.bos_token_id
    batch = encode_texts(tiny_scorer.tokenizer, [text], max_tokens=7, overlength="truncate")
    assert batch.token_ids == [full[-7:]]


def test_reject_names_the_text_and_its_length(tiny_scorer: RewardScorer) -> None:
    text = rendered(tiny_scorer, LONG_PROMPT, "ok")
    n_tokens = len(tiny_scorer.encode_text(text))
    with pytest.raises(RequestError) as caught:
        encode_texts(tiny_scorer.tokenizer, ["fine", text], max_tokens=16, overlength="reject")
    assert caught.value.status == 400
    assert f"query[1] has {n_tokens} tokens" in caught.value.message and "16" in caught.value.message


def test_empty_text_is_refused(tiny_scorer: RewardScorer) -> None:
    with pytest.raises(RequestError, match=r"query\[0\] is empty"):
        encode_texts(tiny_scorer.tokenizer, [""], max_tokens=16, overlength="truncate")


def test_conversations_use_the_one_rendering_path(tiny_scorer: RewardScorer) -> None:
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    batch = encode_conversations(
        tiny_scorer.tokenizer, [Conversation(prompt, "Paris.")], max_tokens=256, overlength="truncate"
    )
    assert batch.token_ids == [tiny_scorer.encode_conversation(prompt, "Paris.")]
    assert batch.truncated == []


def test_long_conversation_loses_old_prompt_tokens_not_the_response(tiny_scorer: RewardScorer) -> None:
    prompt = [{"role": "user", "content": LONG_PROMPT}]
    conversations = [Conversation(prompt, "Short answer."), Conversation([{"role": "user", "content": "hi"}], "yo")]
    batch = encode_conversations(tiny_scorer.tokenizer, conversations, max_tokens=32, overlength="truncate")
    expected = render(tiny_scorer.tokenizer, prompt, "Short answer.", max_length=32, truncation="prompt-left")
    assert expected is not None
    assert batch.truncated == [0]
    assert batch.token_ids[0] == expected.input_ids and len(batch.token_ids[0]) <= 32
    assert tiny_scorer.tokenizer.decode(batch.token_ids[0]).endswith("Short answer.<|im_end|>\n")


def test_conversation_errors(tiny_scorer: RewardScorer) -> None:
    prompt = [{"role": "user", "content": LONG_PROMPT}]
    with pytest.raises(RequestError, match=r"\[0\] renders to \d+ tokens, more than the limit of 32"):
        encode_conversations(
            tiny_scorer.tokenizer, [Conversation(prompt, "x")], max_tokens=32, overlength="reject"
        )
    with pytest.raises(RequestError, match="the response alone is longer than the limit of 16"):
        encode_conversations(
            tiny_scorer.tokenizer,
            [Conversation([{"role": "user", "content": "q"}], LONG_PROMPT)],
            max_tokens=16,
            overlength="truncate",
            single=True,
        )


def test_padding_left_around_a_decoded_text_is_removed(tiny_scorer: RewardScorer) -> None:
    pad = tiny_scorer.tokenizer.pad_token
    text = rendered(tiny_scorer, "hi", "hello")
    batch = encode_texts(tiny_scorer.tokenizer, [pad * 3 + text + pad * 2], max_tokens=64, overlength="truncate")
    assert batch.token_ids == [tiny_scorer.encode_text(text)]
    with pytest.raises(RequestError, match=r"query\[0\] is empty"):
        encode_texts(tiny_scorer.tokenizer, [pad * 4], max_tokens=64, overlength="truncate")


def test_a_chat_template_that_refuses_an_item_is_a_422_naming_it(tiny_scorer: RewardScorer) -> None:
    from transformers import AutoTokenizer

    strict = AutoTokenizer.from_pretrained(tiny_scorer.tokenizer.name_or_path)
    strict.chat_template = (
        "{%- for m in messages %}{%- if m['role'] == 'system' %}"
        "{{ raise_exception('system messages are not supported') }}{%- endif %}"
        "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    good = Conversation([{"role": "user", "content": "hi"}], "hello")
    bad = Conversation([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], "hello")
    assert encode_conversations(strict, [good], max_tokens=64, overlength="truncate").token_ids
    with pytest.raises(RequestError) as caught:
        encode_conversations(strict, [good, bad], max_tokens=64, overlength="truncate")
    assert caught.value.status == 422
    assert "[1]: the model's chat template refused it" in caught.value.message
    assert "system messages are not supported" in caught.value.message
