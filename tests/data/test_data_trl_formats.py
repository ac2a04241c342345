"""TRL's four preference formats (standard/conversational × explicit/implicit prompt) load as TRL reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewardlab.cli import main
from rewardlab.data.formats import extract_text_prompt
from rewardlab.data.loaders import LoadReport, load_pairs

SKY = {"role": "user", "content": "What color is the sky?"}
BLUE = {"role": "assistant", "content": "It is blue."}
GREEN = {"role": "assistant", "content": "It is green."}
SUN = {"role": "user", "content": "Where is the sun?"}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def load(path: Path) -> tuple[list, LoadReport]:
    report = LoadReport()
    return load_pairs(str(path), report=report), report


# --- standard, implicit prompt ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chosen", "rejected", "expected"),
    [
        # TRL's own example; its extract_prompt gives exactly this (the space goes to the responses).
        ("The sky is blue.", "The sky is green.", ("The sky is", " blue.", " green.")),
        # TRL would cut inside the word ("The sky is bl" + "ue."); the cut moves back to the word's start.
        ("The sky is blue.", "The sky is black.", ("The sky is", " blue.", " black.")),
        ("Is it 42?", "Is it 43?", ("Is it", " 42?", " 43?")),
        # One text is the other's beginning: the cut moves back to the last whitespace.
        ("The sky is blue", "The sky is blue and wide.", ("The sky is", " blue", " blue and wide.")),
        # A cut after punctuation is already a boundary.
        ("2 + 2 =4", "2 + 2 =5", ("2 + 2 =", "4", "5")),
        ("Q: capital of France?\nA: Paris.", "Q: capital of France?\nA: Lyon.", ("Q: capital of France?\nA:", " Paris.", " Lyon.")),
        # Nothing in common: no prompt.
        ("Blue.", "Green.", ("", "Blue.", "Green.")),
    ],
)
def test_extract_text_prompt(chosen, rejected, expected):
    prompt, chosen_response, rejected_response = extract_text_prompt(chosen, rejected)
    assert (prompt, chosen_response, rejected_response) == expected
    assert prompt + chosen_response == chosen and prompt + rejected_response == rejected


def test_standard_implicit_prompt_file_loads_instead_of_being_skipped(tmp_path):
    path = write_jsonl(
        tmp_path / "implicit.jsonl",
        [
            {"chosen": "The sky is blue.", "rejected": "The sky is green."},
            {"chosen": "The sun is in the sky.", "rejected": "The sun is in the sea.", "margin": 1.5},
            {"chosen": "Same text.", "rejected": "Same text."},
            {"chosen": "Blue.", "rejected": "Green."},
        ],
    )
    pairs, report = load(path)
    assert report.format == "implicit-standard"
    assert report.kept == 2 and report.skipped == {"chosen equals rejected": 1, "prompts differ": 1}
    assert pairs[0].prompt == ({"role": "user", "content": "The sky is"},)
    assert (pairs[0].chosen, pairs[0].rejected) == (" blue.", " green.")
    assert pairs[1].prompt[0]["content"] == "The sun is in the" and pairs[1].margin == 1.5
    assert (pairs[1].chosen, pairs[1].rejected) == (" sky.", " sea.")
    assert pairs[0].source == f"{path}:1"


def test_hh_rlhf_text_is_still_told_apart_by_its_markers(tmp_path):
    hh = "\n\nHuman: What color is the sky?\n\nAssistant:"
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": hh + " Blue.", "rejected": hh + " Green."}])
    (pair,), report = load(path)
    assert report.format == "hh-rlhf-text"
    assert pair.prompt == (SKY,) and (pair.chosen, pair.rejected) == ("Blue.", "Green.")
    # Without hh-rlhf's "\n\nAssistant:" turn, "Human:" and "Assistant:" are ordinary words.
    plain = write_jsonl(
        tmp_path / "plain.jsonl",
        [{"chosen": "Human: rights matter. Assistant: yes", "rejected": "Human: rights matter. Assistant: no"}],
    )
    (pair,), report = load(plain)
    assert report.format == "implicit-standard"
    assert pair.prompt[0]["content"] == "Human: rights matter. Assistant:" and pair.chosen == " yes"


# --- conversational, implicit prompt ----------------------------------------------------------------


def test_conversational_implicit_prompt_as_trl_writes_it(tmp_path):
    system = {"role": "system", "content": "Answer briefly."}
    records = [
        {"chosen": [SKY, BLUE], "rejected": [SKY, GREEN]},
        {"chosen": [system, SKY, BLUE, SUN, {"role": "assistant", "content": "In the sky."}],
         "rejected": [system, SKY, BLUE, SUN, {"role": "assistant", "content": "In the sea."}]},
    ]
    parquet = tmp_path / "implicit.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    for path in (write_jsonl(tmp_path / "implicit.jsonl", records), parquet):
        (first, second), report = load(path)
        assert report.format == "implicit-conversational"
        assert first.prompt == (SKY,) and (first.chosen, first.rejected) == ("It is blue.", "It is green.")
        assert second.prompt == (system, SKY, BLUE, SUN)
        assert (second.chosen, second.rejected) == ("In the sky.", "In the sea.")


# --- explicit prompt --------------------------------------------------------------------------------


def test_explicit_prompt_standard_and_conversational(tmp_path):
    standard = write_jsonl(tmp_path / "standard.jsonl", [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}])
    (pair,), report = load(standard)
    assert report.format == "standard"
    assert pair.prompt == ({"role": "user", "content": "The sky is"},) and (pair.chosen, pair.rejected) == (" blue.", " green.")

    conversational = write_jsonl(tmp_path / "conv.jsonl", [{"prompt": [SKY], "chosen": [BLUE], "rejected": [GREEN]}])
    (pair,), report = load(conversational)
    assert report.format == "conversational"
    assert pair.prompt == (SKY,) and (pair.chosen, pair.rejected) == ("It is blue.", "It is green.")


def test_string_prompt_beside_full_conversations_is_a_label(tmp_path):
    # TRL's maybe_extract_prompt: a non-conversational prompt next to conversational chosen/rejected is
    # ignored and the prompt is taken from the conversations (here the label differs from the user turn).
    path = write_jsonl(tmp_path / "labelled.jsonl", [{"prompt": "sky colour", "chosen": [SKY, BLUE], "rejected": [SKY, GREEN]}])
    (pair,), report = load(path)
    assert report.format == "standard"
    assert pair.prompt == (SKY,) and (pair.chosen, pair.rejected) == ("It is blue.", "It is green.")
    # Responses without prompt turns of their own still answer the prompt column.
    path = write_jsonl(tmp_path / "answers.jsonl", [{"prompt": "Why?", "chosen": [BLUE], "rejected": [GREEN]}])
    (pair,), _ = load(path)
    assert pair.prompt == ({"role": "user", "content": "Why?"},) and pair.chosen == "It is blue."


# --- through the real command -----------------------------------------------------------------------


def test_train_command_trains_on_standard_implicit_prompt_data(tmp_path, capsys):
    records = [
        {"chosen": f"Question {i}: what is {i} + {i}? The answer is {2 * i}.",
         "rejected": f"Question {i}: what is {i} + {i}? I do not know."}
        for i in range(4)
    ]
    data = write_jsonl(tmp_path / "implicit.jsonl", records)
    code = main([
        "train", "--model", "tiny-random", "--data", str(data), "--output", str(tmp_path / "rm"),
        "--max-steps", "1", "--batch-size", "2", "--max-length", "128",
    ])
    out = capsys.readouterr().out
    assert code == 0
    assert f"kept 4 pairs from {data} [implicit-standard]; skipped 0" in out
    assert json.loads((tmp_path / "rm" / "metrics.json").read_text())["steps"] == 1
