"""Helpers shared by the models tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch


def chat_texts(tokenizer) -> list[str]:
    """Three rendered conversations of different lengths."""
    conversations = [
        [{"role": "user", "content": "What is 12 plus 30?"},
         {"role": "assistant", "content": "The answer is 42."}],
        [{"role": "user", "content": "Name a city in France."}, {"role": "assistant", "content": "Paris."}],
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Explain why the sky looks blue during the day, in one sentence."},
         {"role": "assistant", "content": "Air scatters blue sunlight more strongly than red light."}],
    ]
    return [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]


def encode(tokenizer, texts: list[str], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded batch (input_ids, attention_mask) with padding on `side`."""
    tokenizer.padding_side = side
    batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]
