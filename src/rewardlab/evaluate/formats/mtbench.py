"""MT-Bench human judgments in the ``lmsys/mt_bench_human_judgments`` layout.

The dataset has two splits, ``human`` (expert votes) and ``gpt4_pair`` (GPT-4 pairwise
judgments). Each record: ``question_id``, ``model_a``, ``model_b``, ``winner`` (``model_a``,
``model_b``, ``tie`` or ``tie (bothbad)``), ``judge``, ``turn`` (1 or 2) and ``conversation_a`` /
``conversation_b``, the full two-turn conversations of each model.

Ties are dropped and counted in the load report. (The GRM reference code sent every non-``model_a``
winner to model_b, turning ties into wins for model B.)

Turn handling: a record judges the answer of turn ``turn`` only, so each item scores exactly that
answer. Turn 1: the prompt is the first question and the responses are the two first answers.
Turn 2: each response is the model's second answer, scored after *its own* first answer (the
conversation the judge saw), so the two candidates have different histories. Several judges may
vote on the same comparison; every vote is one item, as in the GRM evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardlab.data.loaders import DataError, LoadReport
from rewardlab.data.pair import Message, PreferencePair
from rewardlab.evaluate.formats.common import parse_messages, read_records, record_skip, require, require_str
from rewardlab.evaluate.items import REJECTED_PROMPT_KEY

SPLITS = ("human", "gpt4_pair")
DATA_SUFFIXES = (".json", ".jsonl", ".jsonl.gz", ".parquet")


def _split_of(file: Path) -> str | None:
    name = file.name.lower()
    for split in sorted(SPLITS, key=len, reverse=True):
        if name.startswith(split) or file.parent.name.lower() == split:
            return split
    return None


def _check_conversation(conversation: tuple[Message, ...], turn: int, location: str, field: str) -> None:
    needed = 2 * turn
    if len(conversation) < needed:
        raise DataError(location, f"field '{field}' has {len(conversation)} messages, turn {turn} needs {needed}")
    for index, message in enumerate(conversation[:needed]):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise DataError(location, f"{field}[{index}] should be a {expected} message")


def _pair_from_record(record: Any, location: str, split: str, report: LoadReport | None) -> PreferencePair | None:
    winner = require_str(record, "winner", location)
    if winner.startswith("tie"):
        record_skip(report, f"MT-Bench tie ({winner})", location)
        return None
    if winner not in ("model_a", "model_b"):
        raise DataError(location, f"field 'winner' must be model_a, model_b or tie*, got {winner!r}")
    turn = require(record, "turn", location)
    if turn not in (1, 2):
        raise DataError(location, f"field 'turn' must be 1 or 2, got {turn!r}")
    conversations = {}
    for side in ("a", "b"):
        field = f"conversation_{side}"
        conversations[side] = parse_messages(require(record, field, location), location, field)
        _check_conversation(conversations[side], turn, location, field)
    if conversations["a"][0]["content"] != conversations["b"][0]["content"]:
        raise DataError(location, "conversation_a and conversation_b start with different questions")
    if turn == 2 and conversations["a"][2]["content"] != conversations["b"][2]["content"]:
        raise DataError(location, "conversation_a and conversation_b have different second questions")
    won, lost = ("a", "b") if winner == "model_a" else ("b", "a")
    answer_index = 2 * turn - 1
    meta: dict[str, Any] = {
        "subset": split,
        "turn": turn,
        "question_id": record.get("question_id"),
        "judge": record.get("judge"),
        "chosen_model": record.get(f"model_{won}"),
        "rejected_model": record.get(f"model_{lost}"),
    }
    if turn == 2:
        meta[REJECTED_PROMPT_KEY] = conversations[lost][:answer_index]
    return PreferencePair(
        prompt=conversations[won][:answer_index],
        chosen=conversations[won][answer_index]["content"],
        rejected=conversations[lost][answer_index]["content"],
        source=location,
        meta=meta,
    )


def load_mtbench_judgments(
    path: str | Path,
    *,
    report: LoadReport | None = None,
    splits: Sequence[str] = SPLITS,
    turns: Sequence[int] = (1, 2),
) -> list[PreferencePair]:
    """Load judgments from one file or a folder of split files (``human*``, ``gpt4_pair*``).

    The split comes from a record's ``split`` field, else the file or folder name; ``splits`` and
    ``turns`` select what to keep (both splits and both turns by default, as GRM does).
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES))
        if not files:
            raise DataError(str(root), "no .json/.jsonl/.parquet files found")
    else:
        files = [root]
    pairs: list[PreferencePair] = []
    for file in files:
        file_split = _split_of(file)
        for location, record in read_records(file):
            split = record.get("split") if isinstance(record, dict) else None
            split = split or file_split or "judgments"
            if split in SPLITS and split not in splits:
                continue
            if isinstance(record, dict) and record.get("turn") not in turns and record.get("turn") in (1, 2):
                continue
            pair = _pair_from_record(record, location, split, report)
            if pair is not None:
                pairs.append(pair)
    return pairs
