"""Preference data: the pair type, loaders, the built-in synthetic generator and the one rendering path."""

from rewardlab.data.loaders import load_pairs, parse_spec
from rewardlab.data.pair import Message, PreferencePair
from rewardlab.data.render import (
    Rendered,
    render,
    render_batch,
    render_pair,
    render_pairs,
    render_prompt_ids,
    render_text,
)
from rewardlab.data.report import DataError, LoadReport
from rewardlab.data.synthetic import generate

__all__ = [
    "DataError",
    "LoadReport",
    "Message",
    "PreferencePair",
    "Rendered",
    "generate",
    "load_pairs",
    "parse_spec",
    "render",
    "render_batch",
    "render_pair",
    "render_pairs",
    "render_prompt_ids",
    "render_text",
]
