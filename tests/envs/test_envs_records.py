"""Episode records are strict JSON whatever a policy put in them (issue 12: one odd record must not stop a run)."""

from __future__ import annotations

import json

import pytest

from rewardlab.envs.records import append_json_line, load_episodes


def _strict_load(line: bytes) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(line.decode("utf-8"), parse_constant=refuse)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("files", "bad\udcffname.txt", "bad\\xffname.txt"),  # an undecodable file-name byte, as os.fsdecode gives it
        ("reply", "half \ud83d of an emoji", "half \\ud83d of an emoji"),  # a lone surrogate in a model reply
        ("reward", float("nan"), "NaN"),
        ("reward", float("inf"), "Infinity"),
        ("reward", float("-inf"), "-Infinity"),
    ],
)
def test_records_with_unencodable_text_or_non_finite_numbers_are_written_as_strict_json(tmp_path, field, value, expected):
    path = tmp_path / "episodes.jsonl"
    append_json_line(path, {"id": "e-1", "env": "tampering", "outcome": "honest", "details": {field: value}})
    record = _strict_load(path.read_bytes().splitlines()[0])
    assert record["details"][field] == expected
    assert load_episodes(tmp_path).records[0]["id"] == "e-1"


def test_dictionary_keys_that_cannot_be_encoded_are_escaped_too(tmp_path):
    path = tmp_path / "episodes.jsonl"
    append_json_line(path, {"id": "e-2", "env": "e", "outcome": "o", "files_changed": {"created": {"x\udc80": 1}}})
    assert _strict_load(path.read_bytes())["files_changed"]["created"] == {"x\\x80": 1}


def test_characters_that_splitlines_breaks_on_stay_inside_their_line(tmp_path):
    path = tmp_path / "episodes.jsonl"
    text = "a\u2028b\u2029c\x85d\x0be\x1cf"
    append_json_line(path, {"id": "e-3", "env": "e", "outcome": "o", "stdout": text})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and _strict_load(lines[0].encode("utf-8"))["stdout"] == text
