"""Pad tokens: every rewardlab tokenizer pads with a special token that a rendered conversation never
contains, because the reward is read at the last non-pad token."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

ADDED_PAD_TOKEN = "<|rewardlab_pad|>"
# Existing special tokens tried, in order, before a new pad token is added.
PAD_TOKEN_CANDIDATES = ("<|endoftext|>", "<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]")

_PROBE_CONVERSATION = (
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is two plus two?"},
    {"role": "assistant", "content": "Two plus two is four."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You are welcome."},
)


def _rendered_probe_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that appear in a typical rendered conversation (template tokens included)."""
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(list(_PROBE_CONVERSATION), tokenize=False)
    else:
        text = "".join(f"{message['role']}: {message['content']}\n" for message in _PROBE_CONVERSATION)
    ids = set(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids.update(tokenizer(text, add_special_tokens=True)["input_ids"])
    return ids


def pad_token_is_safe(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True if the pad token is a special token that a rendered conversation never contains."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None or tokenizer.pad_token not in tokenizer.all_special_tokens:
        return False
    return pad_id not in _rendered_probe_ids(tokenizer)


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give `tokenizer` a safe pad token; returns True if a new token was added to the vocabulary.

    Prefers an existing special token (e.g. SmolLM2's `<|endoftext|>`, since its template ends
    turns with `<|im_end|>` which is also its default pad); adds `<|rewardlab_pad|>` otherwise,
    in which case the model's embeddings must be resized to `len(tokenizer)`.
    """
    if pad_token_is_safe(tokenizer):
        return False
    used = _rendered_probe_ids(tokenizer)
    vocab = tokenizer.get_vocab()
    for candidate in PAD_TOKEN_CANDIDATES:
        if candidate in vocab and vocab[candidate] not in used:
            tokenizer.pad_token = candidate
            if pad_token_is_safe(tokenizer):
                return False
    tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
    return True
