"""Tokenizer fixtures for the data tests: the project's tiny-random tokenizer plus small purpose-built ones."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from rewardlab.models.registry import load_tokenizer

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# Inserts BOS itself, like Llama/Gemma templates; the generation prompt ends with a newline.
BOS_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]\n{% endif %}"
)
# The generation prompt ends with a space, which byte-level BPE merges into the response's first word.
MERGING_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)

# Refuses system messages, as some real templates do.
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:\n{% endif %}"
)

_CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Human: hello there Assistant: hi, how can I help you today?",
    "user assistant system [user] [assistant] [system] the answer is 42.",
    "Please write a short poem about the sea and the sky and the wind.",
    "I can't help with that. Sure, here is how to do that. Great question!",
] * 20


def _backend() -> Tokenizer:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    bos_id = backend.token_to_id(BOS)
    # Default tokenizer calls add BOS, so a template that also writes BOS would give two of them.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return backend


def _wrap(chat_template: str | None) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_backend(), bos_token=BOS, eos_token=EOS, pad_token=PAD, clean_up_tokenization_spaces=False
    )
    tokenizer.chat_template = chat_template
    return tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The project's `tiny-random` tokenizer (ChatML template)."""
    return load_tokenizer("tiny-random")


@pytest.fixture(scope="session")
def bos_tokenizer() -> PreTrainedTokenizerFast:
    """A template that writes BOS itself, on a tokenizer that also adds BOS by default."""
    return _wrap(BOS_TEMPLATE)


@pytest.fixture(scope="session")
def merging_tokenizer() -> PreTrainedTokenizerFast:
    """A template whose prompt rendering is not a token prefix of the full rendering."""
    return _wrap(MERGING_TEMPLATE)


@pytest.fixture(scope="session")
def plain_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer without a chat template (the plain Human/Assistant fallback applies)."""
    return _wrap(None)


@pytest.fixture(scope="session")
def no_system_tokenizer() -> PreTrainedTokenizerFast:
    """A template that raises on system messages."""
    return _wrap(NO_SYSTEM_TEMPLATE)
