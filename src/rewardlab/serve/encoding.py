"""Turn request items into token ids under the server's length policy.

Texts from ``/get_reward`` are tokenized as they are (``add_special_tokens=False``, the caller
rendered them), minus any padding around them. Conversations from ``/score`` go through the one rendering path,
`rewardlab.data.render`, so they get exactly the tokens training and ``rewardlab score`` use.

Over-length items are either refused (``reject``) or shortened (``truncate``), and the indices of
shortened items are reported back to the caller:

* a rendered text keeps its *last* ``max_tokens`` tokens (plus a leading BOS when it starts with
  one), because the reward is read at the final token;
* a conversation loses its oldest prompt tokens and keeps the response whole; if the response
  alone does not fit, it is refused whatever the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardlab.data.render import Rendered, conversation_text, render_batch, render_text, with_special_tokens
from rewardlab.serve.protocol import Conversation, RequestError


@dataclass
class EncodedBatch:
    """Token ids ready to score, and which of them were shortened."""

    token_ids: list[list[int]] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)

    @property
    def truncated_flags(self) -> list[bool]:
        """One flag per item: was it shortened?"""
        marked = set(self.truncated)
        return [index in marked for index in range(len(self.token_ids))]


def _keep_tail(ids: list[int], max_tokens: int, bos_id: int | None) -> list[int]:
    if bos_id is not None and ids and ids[0] == bos_id and max_tokens > 1:
        return ids[:1] + ids[len(ids) - (max_tokens - 1) :]
    return ids[len(ids) - max_tokens :]


def _strip_padding(ids: list[int], pad_id: int | None) -> list[int]:
    if pad_id is None:
        return ids
    start, end = 0, len(ids)
    while start < end and ids[start] == pad_id:
        start += 1
    while end > start and ids[end - 1] == pad_id:
        end -= 1
    return ids[start:end]


def encode_texts(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_tokens: int,
    overlength: str,
    field_name: str = "query",
) -> EncodedBatch:
    """Tokenize already-rendered texts and apply the length policy (errors name ``field_name[i]``).

    Special tokens go where ``tokenizer(text)`` (and so training) puts them, unless the text has them.
    Leading and trailing pad tokens are dropped first: trainers that decode padded batches with
    ``skip_special_tokens=False`` leave them in, and rewardlab tokenizers use a pad token that a
    rendered conversation never contains, so removing them never changes a real text.
    """
    batch = EncodedBatch()
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    bos_id = getattr(tokenizer, "bos_token_id", None)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    for index, ids in enumerate(encoded):
        ids = _strip_padding(list(ids), pad_id)
        if not ids:
            raise RequestError(422, f"{field_name}[{index}] is empty (no tokens to score besides padding)")
        ids = with_special_tokens(tokenizer, ids)  # BOS/EOS as training placed them, never doubled
        if len(ids) > max_tokens:
            if overlength == "reject":
                raise RequestError(
                    400,
                    f"{field_name}[{index}] has {len(ids)} tokens, more than the limit of {max_tokens} "
                    "(--max-tokens; this server rejects over-length texts)",
                )
            ids = _keep_tail(ids, max_tokens, bos_id)
            batch.truncated.append(index)
        batch.token_ids.append(ids)
    return batch


def encode_conversations(
    tokenizer: Any,
    conversations: Sequence[Conversation],
    *,
    max_tokens: int,
    overlength: str,
    single: bool = False,
) -> EncodedBatch:
    """Render conversations with the model's chat template and apply the length policy.

    ``single`` drops the ``[i]`` prefix from error messages (the request held one object).
    """
    whole = _render_all(tokenizer, conversations, max_tokens, single)
    batch = EncodedBatch()
    for index, rendered in enumerate(whole):
        where = _where(index, single)
        if rendered is None:
            if overlength == "reject":
                conversation = conversations[index]
                length = len(render_text(tokenizer, conversation_text(tokenizer, conversation.prompt, conversation.response)))
                raise RequestError(
                    400,
                    f"{where} renders to {length} tokens, more than the limit of {max_tokens} "
                    "(--max-tokens; this server rejects over-length texts)",
                )
            conversation = conversations[index]
            (rendered,) = render_batch(
                tokenizer, [conversation.prompt], [conversation.response], max_length=max_tokens, truncation="prompt-left"
            )
            if rendered is None:
                raise RequestError(
                    400, f"{where}: the response alone is longer than the limit of {max_tokens} tokens (--max-tokens)"
                )
            batch.truncated.append(index)
        if not rendered.input_ids:
            raise RequestError(422, f"{where} renders to no tokens")
        batch.token_ids.append(list(rendered.input_ids))
    return batch



def _where(index: int, single: bool) -> str:
    return "the conversation" if single else f"[{index}]"


def _render_all(
    tokenizer: Any, conversations: Sequence[Conversation], max_tokens: int, single: bool
) -> list[Rendered | None]:
    """Render everything in one tokenizer call; if the chat template refuses an item, name it (422)."""
    prompts = [c.prompt for c in conversations]
    responses = [c.response for c in conversations]
    try:
        return render_batch(tokenizer, prompts, responses, max_length=max_tokens, truncation="drop")
    except Exception:  # a template error from one item: find which one below
        pass
    for index, conversation in enumerate(conversations):
        try:
            render_batch(tokenizer, [conversation.prompt], [conversation.response], max_length=max_tokens)
        except Exception as error:
            raise RequestError(
                422, f"{_where(index, single)}: the model's chat template refused it: {type(error).__name__}: {error}"
            ) from None
    raise RequestError(422, "the model's chat template refused this batch of conversations")
