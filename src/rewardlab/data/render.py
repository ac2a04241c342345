"""The one rendering path: chat messages + response -> token ids, used by training, scoring, eval and serving.

Convention (enforced here and nowhere else):

* The text is the tokenizer's chat template applied to ``prompt + [assistant response]``; tokenizers
  without a chat template get the plain format ``"Human: …\\n\\nAssistant: …"`` (see `plain_text`).
* Special tokens are placed exactly as the tokenizer's own call (``tokenizer(text)``) places them:
  its BOS before the text (base Llama/Mistral/Gemma tokenizers add one, with or without a chat
  template), its EOS after a whole conversation where its encoding adds one. A BOS (or EOS) the
  template already wrote into the text is not added a second time. The prompt alone (for
  ``response_start`` and generation) gets the leading tokens only. See `special_tokens`.
* ``response_start`` is the token length of the prompt rendered with ``add_generation_prompt=True``.
  If the full rendering does not start with those tokens (a template that rewrites earlier turns, or
  a tokenizer that merges across the boundary), it falls back to the longest common token prefix.
* Over-length examples: ``"drop"`` returns None; ``"prompt-left"`` cuts the oldest prompt tokens
  (the leading special tokens are kept) and keeps the response whole (with any EOS), or returns None if
  the response alone is too long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewardlab.data.pair import Message, PreferencePair

TRUNCATION_POLICIES = ("drop", "prompt-left")

PLAIN_ROLE_LABELS = {"system": "System", "user": "Human", "assistant": "Assistant"}
"""Speaker labels of the plain fallback format, used when a tokenizer has no chat template."""


@dataclass(frozen=True)
class Rendered:
    """Token ids of one rendered conversation; ``input_ids[response_start:]`` are the response tokens."""

    input_ids: list[int]
    response_start: int

    @property
    def response_ids(self) -> list[int]:
        """The tokens the SFT regularizer scores."""
        return self.input_ids[self.response_start :]

    def __len__(self) -> int:
        return len(self.input_ids)


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template (otherwise the plain format is used)."""
    return bool(getattr(tokenizer, "chat_template", None))


def plain_text(messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
    """Render messages as ``"Human: …\\n\\nAssistant: …"`` (the fallback for template-less tokenizers).

    With ``add_generation_prompt`` the text ends with ``"\\n\\nAssistant:"``; the response then
    follows after one space, so the prompt text is always a prefix of the full text.
    """
    turns = [f"{PLAIN_ROLE_LABELS.get(m['role'], m['role'].capitalize())}: {m['content']}" for m in messages]
    text = "\n\n".join(turns)
    if add_generation_prompt:
        text = f"{text}\n\n{PLAIN_ROLE_LABELS['assistant']}:" if text else f"{PLAIN_ROLE_LABELS['assistant']}:"
    return text


def prompt_text(tokenizer: Any, prompt: Sequence[Message]) -> str:
    """The prompt as text, ending with the generation prompt for the assistant turn."""
    messages = _checked_messages(prompt)
    if has_chat_template(tokenizer):
        return _apply_template(tokenizer, messages, add_generation_prompt=True)
    return plain_text(messages, add_generation_prompt=True)


def conversation_text(tokenizer: Any, prompt: Sequence[Message], response: str) -> str:
    """The full conversation (prompt + assistant response) as text, exactly as `render` tokenizes it."""
    messages = _checked_messages(prompt)
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    if has_chat_template(tokenizer):
        full = [*messages, {"role": "assistant", "content": response}]
        return _apply_template(tokenizer, full, add_generation_prompt=False)
    return f"{plain_text(messages, add_generation_prompt=True)} {response}"


_SPECIAL_TOKEN_PROBE = "Hello"


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids ``tokenizer(text)`` adds before and after a text's own tokens, e.g. ``([bos], [])``.

    Found by encoding a probe with and without ``add_special_tokens``, so whatever the tokenizer
    is configured to do (``add_bos_token``, ``add_eos_token``, a post-processor) is followed.
    """
    # Kept on the tokenizer (serving asks once per text), keyed by the settings that change the answer.
    key = (getattr(tokenizer, "add_bos_token", None), getattr(tokenizer, "add_eos_token", None), len(tokenizer))
    cached = getattr(tokenizer, "_rewardlab_special_tokens", None)
    if cached is not None and cached[0] == key:
        return list(cached[1]), list(cached[2])
    prefix, suffix = _probe_special_tokens(tokenizer)
    try:
        tokenizer._rewardlab_special_tokens = (key, tuple(prefix), tuple(suffix))
    except AttributeError:  # a tokenizer that takes no new attributes: probe every time
        pass
    return prefix, suffix


def _probe_special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    with_special = list(tokenizer(_SPECIAL_TOKEN_PROBE, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(_SPECIAL_TOKEN_PROBE, add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return with_special[:start], with_special[start + len(plain) :]
    # The special tokens changed the text's own tokens: keep the special ids at either end.
    special = set(getattr(tokenizer, "all_special_ids", []))
    head = 0
    while head < len(with_special) and with_special[head] in special:
        head += 1
    tail = len(with_special)
    while tail > head and with_special[tail - 1] in special:
        tail -= 1
    return with_special[:head], with_special[tail:]


def _add_special(ids: Sequence[int], prefix: list[int], suffix: list[int], *, whole: bool) -> list[int]:
    """``prefix + ids (+ suffix if whole)``, skipping a prefix or suffix the text already has."""
    out = list(ids)
    if prefix and out[: len(prefix)] != prefix:
        out = prefix + out
    if whole and suffix and out[-len(suffix) :] != suffix:
        out = out + suffix
    return out


def with_special_tokens(tokenizer: Any, ids: Sequence[int], *, whole: bool = True) -> list[int]:
    """``ids`` of a text with the special tokens ``tokenizer(text)`` would add (``whole=False``: leading
    ones only, for a prompt to generate from); ones the text already has are not doubled."""
    prefix, suffix = special_tokens(tokenizer)
    return _add_special(ids, prefix, suffix, whole=whole)


def render_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of already-rendered whole conversations, special tokens as `render` places them."""
    prefix, suffix = special_tokens(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    return [_add_special(ids, prefix, suffix, whole=True) for ids in encoded]


def render_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of an already-rendered whole conversation (server path), as ``tokenizer(text)`` gives them.

    A BOS/EOS already in the text is not doubled, so a chat-template text gives the same ids as
    `render` of the same conversation.
    """
    return render_texts(tokenizer, [text])[0]


def render_prompt_ids(tokenizer: Any, prompt: Sequence[Message]) -> list[int]:
    """Token ids of the prompt with the generation prompt (leading special tokens only), e.g. to generate from."""
    prefix, _ = special_tokens(tokenizer)
    ids = tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    return _add_special(ids, prefix, [], whole=False)


def render(
    tokenizer: Any,
    prompt: Sequence[Message],
    response: str,
    *,
    max_length: int,
    truncation: str = "drop",
) -> Rendered | None:
    """Render one conversation; None when it cannot fit in ``max_length`` under the truncation policy."""
    return render_batch(tokenizer, [prompt], [response], max_length=max_length, truncation=truncation)[0]


def render_pair(
    tokenizer: Any, pair: PreferencePair, max_length: int, truncation: str = "drop"
) -> tuple[Rendered, Rendered] | None:
    """Render a pair's chosen and rejected conversations; None if either cannot fit (caller counts a skip)."""
    chosen, rejected = render_batch(
        tokenizer,
        [pair.prompt, pair.prompt],
        [pair.chosen, pair.rejected],
        max_length=max_length,
        truncation=truncation,
    )
    if chosen is None or rejected is None:
        return None
    return chosen, rejected


def render_pairs(
    tokenizer: Any, pairs: Sequence[PreferencePair], max_length: int, truncation: str = "drop"
) -> list[tuple[Rendered, Rendered] | None]:
    """`render_pair` for many pairs with one batched tokenizer call (much faster for fast tokenizers)."""
    prompts = [pair.prompt for pair in pairs for _ in range(2)]
    responses = [text for pair in pairs for text in (pair.chosen, pair.rejected)]
    flat = render_batch(tokenizer, prompts, responses, max_length=max_length, truncation=truncation)
    out: list[tuple[Rendered, Rendered] | None] = []
    for chosen, rejected in zip(flat[0::2], flat[1::2]):
        out.append(None if chosen is None or rejected is None else (chosen, rejected))
    return out


def render_batch(
    tokenizer: Any,
    prompts: Sequence[Sequence[Message]],
    responses: Sequence[str],
    *,
    max_length: int,
    truncation: str = "drop",
) -> list[Rendered | None]:
    """Render many conversations; identical prompts are rendered once and all texts tokenized in one call."""
    if truncation not in TRUNCATION_POLICIES:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATION_POLICIES)}; got {truncation!r}")
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer; got {max_length!r}")
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        return []

    prompt_slot: dict[tuple[tuple[str, str], ...], int] = {}
    unique_prompt_texts: list[str] = []
    slots: list[int] = []
    full_texts: list[str] = []
    for prompt, response in zip(prompts, responses):
        key = tuple((m.get("role", ""), m.get("content", "")) for m in prompt) if _all_dicts(prompt) else None
        if key is None or key not in prompt_slot:
            slot = len(unique_prompt_texts)
            unique_prompt_texts.append(prompt_text(tokenizer, prompt))
            if key is not None:
                prompt_slot[key] = slot
        else:
            slot = prompt_slot[key]
        slots.append(slot)
        full_texts.append(conversation_text(tokenizer, prompt, response))

    encoded = tokenizer([*unique_prompt_texts, *full_texts], add_special_tokens=False)["input_ids"]
    prefix, suffix = special_tokens(tokenizer)
    prompt_ids = [_add_special(ids, prefix, suffix, whole=False) for ids in encoded[: len(unique_prompt_texts)]]
    full_ids = [_add_special(ids, prefix, suffix, whole=True) for ids in encoded[len(unique_prompt_texts) :]]
    bos_id = getattr(tokenizer, "bos_token_id", None)
    return [
        _fit(ids, _response_start(prompt_ids[slot], ids), max_length, truncation, _kept_head(ids, prefix, bos_id))
        for slot, ids in zip(slots, full_ids)
    ]


def _kept_head(ids: Sequence[int], prefix: list[int], bos_id: int | None) -> int:
    """How many leading special tokens prompt-left truncation keeps: the tokenizer's prefix, or a template's BOS."""
    if prefix and list(ids[: len(prefix)]) == prefix:
        return len(prefix)
    return 1 if bos_id is not None and len(ids) > 0 and ids[0] == bos_id else 0


def _response_start(prompt_ids: Sequence[int], full_ids: Sequence[int]) -> int:
    """Length of the prompt's tokens inside the full rendering (longest common prefix if not a prefix)."""
    prompt_ids, full_ids = list(prompt_ids), list(full_ids)
    if full_ids[: len(prompt_ids)] == prompt_ids:
        return len(prompt_ids)
    limit = min(len(prompt_ids), len(full_ids))
    common = 0
    while common < limit and prompt_ids[common] == full_ids[common]:
        common += 1
    return common


def _fit(ids: list[int], start: int, max_length: int, truncation: str, head: int) -> Rendered | None:
    """Apply the truncation policy to one rendering; ``head`` leading special tokens are always kept."""
    if len(ids) <= max_length:
        return Rendered(ids, start)
    if truncation == "drop":
        return None
    # prompt-left: keep the leading special tokens, then as many of the newest prompt tokens as fit, then the response.
    head = min(head, start)
    response_length = len(ids) - start
    room = max_length - head - response_length
    if room < 0:
        return None
    kept = ids[:head] + ids[start - room : start] + ids[start:]
    return Rendered(kept, head + room)


def _apply_template(tokenizer: Any, messages: list[Message], *, add_generation_prompt: bool) -> str:
    """The chat template's text; a template error names the roles it was given."""
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja2 raises its own types, e.g. for roles a template forbids
        roles = ", ".join(m["role"] for m in messages)
        raise ValueError(f"the tokenizer's chat template cannot render messages with roles [{roles}]: {exc}") from exc


def _all_dicts(prompt: Sequence[Message]) -> bool:
    return all(isinstance(m, dict) for m in prompt)


def _checked_messages(prompt: Sequence[Message]) -> list[Message]:
    """The prompt as a list of ``{"role", "content"}`` dicts; a clear error if it is not one."""
    if isinstance(prompt, (str, bytes)) or not isinstance(prompt, Sequence):
        raise TypeError(f"prompt must be a sequence of chat messages, got {type(prompt).__name__}")
    messages: list[Message] = []
    for index, message in enumerate(prompt):
        if not isinstance(message, dict):
            raise TypeError(f"prompt[{index}] must be a dict with 'role' and 'content', got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise TypeError(f"prompt[{index}] needs string 'role' and 'content', got {message!r}")
        messages.append({"role": role, "content": content})
    return messages
