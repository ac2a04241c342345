"""Loading preference pairs: every format, every container, every kind of bad input."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewardlab.data.loaders import DataError, LoadReport, load_pairs, parse_spec
from rewardlab.data.synthetic import generate

REPO_ROOT = Path(__file__).resolve().parents[2]
HH_TEST_FILE = REPO_ROOT / ".." / "shared" / "data" / "anthropic-hh-rlhf" / "harmless-base-test.jsonl.gz"

USER = {"role": "user", "content": "What is the capital of France?"}
PARIS = {"role": "assistant", "content": "Paris."}
LYON = {"role": "assistant", "content": "Lyon."}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


# --- the real hh-rlhf file --------------------------------------------------------------------------


def test_real_hh_rlhf_file_every_record_accounted_for():
    report = LoadReport()
    pairs = load_pairs(str(HH_TEST_FILE), report=report)
    # 5 pairs have differing prompts (known hh-rlhf quirk); 4 more have an empty final chosen turn.
    assert report.skipped == {"prompts differ": 5, "empty response": 4}
    assert report.kept == len(pairs) == 2303
    assert report.kept + report.total_skipped == 2312
    assert report.format == "hh-rlhf-text"
    summary = report.summary()
    assert "kept 2303" in summary and "prompts differ: 5" in summary and "empty response: 4" in summary
    assert any(example.endswith("harmless-base-test.jsonl.gz:1255 (prompts differ)") for example in report.examples)
    for pair in pairs:
        assert pair.prompt[-1]["role"] == "user"
        assert all("\n\nHuman:" not in m["content"] and "\n\nAssistant:" not in m["content"] for m in pair.prompt)
        assert pair.chosen.strip() and pair.chosen != pair.rejected


def test_real_hh_rlhf_multi_turn_history_is_parsed():
    pairs = load_pairs(str(HH_TEST_FILE), limit=1)
    assert len(pairs) == 1
    (pair,) = pairs
    assert [m["role"] for m in pair.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert pair.prompt[0]["content"] == "what are some pranks with a pen i can do?"
    assert pair.prompt[1]["content"] == "Are you looking for practical joke ideas?"
    assert pair.prompt[2]["content"] == "yep"
    assert pair.prompt[4]["content"] == "okay some of these do not have anything to do with pens"
    assert pair.chosen.startswith("No, sorry!  All of these involve a pen")
    assert pair.rejected.startswith("There are lots of funny things you can do with pens")
    assert pair.source.endswith("harmless-base-test.jsonl.gz:1")
    assert sum(len(p.prompt) > 1 for p in load_pairs(str(HH_TEST_FILE), report=LoadReport())) > 1500


# --- formats ----------------------------------------------------------------------------------------


def test_standard_format_with_margin_and_source(tmp_path):
    path = write_jsonl(
        tmp_path / "standard.jsonl",
        [
            {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Lyon.", "margin": 2},
            {"prompt": "2 + 2?", "chosen": "4", "rejected": "5", "source": "math", "id": 7},
        ],
    )
    report = LoadReport()
    first, second = load_pairs(str(path), report=report)
    assert report.format == "standard" and report.kept == 2
    assert first.prompt == (USER,) and first.chosen == "Paris." and first.rejected == "Lyon."
    assert first.margin == 2.0 and isinstance(first.margin, float)
    assert first.source == f"{path}:1" and first.meta["location"] == f"{path}:1"
    assert second.margin is None and second.source == "math" and second.meta["location"] == f"{path}:2"


def test_conversational_format_with_assistant_lists_and_full_conversations(tmp_path):
    system = {"role": "system", "content": "Be brief."}
    path = write_jsonl(
        tmp_path / "conversational.jsonl",
        [
            {"prompt": [system, USER], "chosen": [PARIS], "rejected": [LYON], "subset": "geo"},
            {"prompt": [USER], "chosen": [USER, PARIS], "rejected": [USER, LYON]},
            {
                "prompt": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
                "chosen": "Hello!",
                "rejected": "Go away.",
            },
        ],
    )
    report = LoadReport()
    pairs = load_pairs(str(path), report=report)
    assert report.format == "conversational"
    assert pairs[0].prompt == (system, USER) and pairs[0].chosen == "Paris." and pairs[0].source == "geo"
    assert pairs[1].prompt == (USER,) and (pairs[1].chosen, pairs[1].rejected) == ("Paris.", "Lyon.")
    assert pairs[2].prompt == ({"role": "user", "content": "Hi there"},) and pairs[2].chosen == "Hello!"


def test_implicit_prompt_conversations_split_at_last_turn(tmp_path):
    history = [USER, PARIS, {"role": "user", "content": "And of Italy?"}]
    path = write_jsonl(
        tmp_path / "implicit.jsonl",
        [
            {"chosen": [*history, {"role": "assistant", "content": "Rome."}],
             "rejected": [*history, {"role": "assistant", "content": "Milan."}]},
            {"chosen": [USER, PARIS], "rejected": [{"role": "user", "content": "Other question?"}, LYON]},
            {"chosen": [USER, PARIS], "rejected": [USER]},
        ],
    )
    report = LoadReport()
    (pair,) = load_pairs(str(path), report=report)
    assert report.format == "implicit-conversational"
    assert pair.prompt == tuple(history) and (pair.chosen, pair.rejected) == ("Rome.", "Milan.")
    assert report.skipped == {"prompts differ": 1, "no final assistant turn": 1}
    assert f"{path}:2 (prompts differ)" in report.examples


def test_hh_text_fixture_multi_turn_and_skips(tmp_path):
    history = "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Capital of France?"
    path = write_jsonl(
        tmp_path / "hh.jsonl",
        [
            {"chosen": history + "\n\nAssistant: Paris.", "rejected": history + "\n\nAssistant: Lyon."},
            {"chosen": history + "\n\nAssistant: Paris.", "rejected": "\n\nHuman: Other?\n\nAssistant: Lyon."},
            {"chosen": "no markers here", "rejected": "none here either"},
            {"chosen": "preamble\n\nHuman: Hi\n\nAssistant: A", "rejected": "preamble\n\nHuman: Hi\n\nAssistant: B"},
            {"chosen": history + "\n\nAssistant: Same.", "rejected": history + "\n\nAssistant: Same."},
            {"chosen": history + "\n\nAssistant:  ", "rejected": history + "\n\nAssistant: Lyon."},
        ],
    )
    report = LoadReport()
    (pair,) = load_pairs(str(path), report=report)
    assert pair.prompt == (
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Capital of France?"},
    )
    assert (pair.chosen, pair.rejected) == ("Paris.", "Lyon.")
    assert report.skipped == {
        "prompts differ": 1,
        "no final assistant turn": 1,
        "unparsable dialogue": 1,
        "chosen equals rejected": 1,
        "empty response": 1,
    }
    assert report.kept + report.total_skipped == 6


# --- containers -------------------------------------------------------------------------------------


def _records() -> list[dict]:
    return [
        {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Lyon.", "margin": 0.5},
        {"prompt": "2 + 2?", "chosen": "4", "rejected": "5", "margin": None},
    ]


def _assert_two_standard_pairs(pairs) -> None:
    assert [(p.prompt[-1]["content"], p.chosen, p.rejected, p.margin) for p in pairs] == [
        ("What is the capital of France?", "Paris.", "Lyon.", 0.5),
        ("2 + 2?", "4", "5", None),
    ]


def test_jsonl_gz_json_list_and_parquet(tmp_path):
    gz = tmp_path / "pairs.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in _records())
    listing = tmp_path / "pairs.json"
    listing.write_text(json.dumps(_records()), encoding="utf-8")
    parquet = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(_records()), parquet)
    for path in (gz, listing, parquet):
        pairs = load_pairs(str(path))
        _assert_two_standard_pairs(pairs)
    assert load_pairs(str(listing))[1].source == f"{listing}[1]"
    assert load_pairs(str(parquet))[0].source == f"{parquet}[0]"


def test_datasets_folders_with_and_without_splits(tmp_path):
    import datasets

    single = tmp_path / "single"
    datasets.Dataset.from_list(_records()).save_to_disk(str(single))
    _assert_two_standard_pairs(load_pairs(str(single)))
    several = tmp_path / "several"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(_records()), "test": datasets.Dataset.from_list(_records()[:1])}
    ).save_to_disk(str(several))
    _assert_two_standard_pairs(load_pairs(str(several)))
    (test_pair,) = load_pairs(str(several), split="test")
    assert test_pair.source == f"{several}[test][0]"
    with pytest.raises(DataError, match="has no split 'validation'; available: train, test"):
        load_pairs(str(several), split="validation")


def test_folder_of_data_files_splits_like_load_dataset(tmp_path):
    # JSON Lines are read here (sources are file:line); other layouts, such as CSV, go through load_dataset.
    folder = tmp_path / "files"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", _records())
    pairs = load_pairs(str(folder))
    _assert_two_standard_pairs(pairs)
    assert pairs[0].source == f"{folder / 'train.jsonl'}:1"
    csv_folder = tmp_path / "csv"
    csv_folder.mkdir()
    (csv_folder / "train.csv").write_text(
        "prompt,chosen,rejected,margin\nWhat is the capital of France?,Paris.,Lyon.,0.5\n2 + 2?,4,5,\n", encoding="utf-8"
    )
    pairs = load_pairs(str(csv_folder))
    _assert_two_standard_pairs(pairs)
    assert pairs[0].source == f"{csv_folder}[train][0]"


def test_conversational_parquet_and_datasets_folder(tmp_path):
    import datasets

    records = [{"prompt": [USER], "chosen": [PARIS], "rejected": [LYON]}]
    parquet = tmp_path / "conv.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    folder = tmp_path / "conv"
    datasets.Dataset.from_list(records).save_to_disk(str(folder))
    for spec in (parquet, folder):
        report = LoadReport()
        (pair,) = load_pairs(str(spec), report=report)
        assert report.format == "conversational"
        assert pair.prompt == (USER,) and (pair.chosen, pair.rejected) == ("Paris.", "Lyon.")


def test_blank_lines_and_byte_order_mark_are_fine(tmp_path):
    path = tmp_path / "bom.jsonl"
    body = "\n".join(json.dumps(record) for record in _records())
    path.write_bytes(b"\xef\xbb\xbf" + body.replace("\n", "\n\n").encode("utf-8") + b"\n\n")
    _assert_two_standard_pairs(load_pairs(str(path)))


def test_limit_stops_after_kept_pairs(tmp_path):
    records = [{"prompt": "Q", "chosen": "A", "rejected": "A"}] + [
        {"prompt": f"Q{i}", "chosen": "yes", "rejected": "no"} for i in range(5)
    ]
    path = write_jsonl(tmp_path / "many.jsonl", records)
    report = LoadReport()
    pairs = load_pairs(str(path), report=report, limit=3)
    assert [p.prompt[-1]["content"] for p in pairs] == ["Q0", "Q1", "Q2"]
    assert report.kept == 3 and report.skipped == {"chosen equals rejected": 1}
    assert load_pairs(str(path), limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        load_pairs(str(path), limit=-1)


# --- synthetic specs --------------------------------------------------------------------------------


def test_synthetic_specs_and_options():
    pairs = load_pairs("synthetic:ood?n=50&seed=3&spurious_correlation=0.9")
    expected = generate("ood", n=50, seed=3, spurious_correlation=0.9)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [(p.prompt, p.chosen, p.rejected) for p in expected]
    report = LoadReport()
    default = load_pairs("synthetic", report=report)
    assert len(default) == 1000 and report.kept == 1000 and report.format == "synthetic"
    assert {p.meta["split"] for p in default} == {"id"}
    limited = load_pairs("synthetic:id?n=50", limit=7)
    assert [p.chosen for p in limited] == [p.chosen for p in generate("id", n=50)[:7]]
    assert {p.meta["split"] for p in load_pairs("synthetic?n=5", split="ood")} == {"ood"}


@pytest.mark.parametrize(
    ("spec", "split", "message"),
    [
        ("synthetic:test", None, "unknown synthetic split 'test'"),
        ("synthetic?size=5", None, "unknown option 'size'"),
        ("synthetic?n=many", None, "option n='many' is not a number"),
        ("synthetic?spurious_correlation=2", None, "spurious_correlation must be in"),
        ("synthetic:id", "ood", "spec names split 'id' but split='ood'"),
        ("synthetic", "train", "synthetic data has splits id, ood"),
        ("synthetic?n", None, "must look like key=value"),
    ],
)
def test_bad_synthetic_specs(spec, split, message):
    with pytest.raises(DataError, match=message):
        load_pairs(spec, split=split)


def test_parse_spec():
    assert parse_spec("synthetic:ood?n=200&seed=3") == ("synthetic:ood", {"n": "200", "seed": "3"})
    assert parse_spec("org/name?data_dir=harmless-base") == ("org/name", {"data_dir": "harmless-base"})
    assert parse_spec("data/train.jsonl") == ("data/train.jsonl", {})
    with pytest.raises(ValueError):
        parse_spec("  ")


# --- bad input: errors name file, line/record and field -----------------------------------------


def test_missing_required_column_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "missing.jsonl", [{"prompt": "Q", "chosen": "A"}])
    with pytest.raises(DataError) as caught:
        load_pairs(str(path))
    assert str(caught.value).startswith(f"{path}:1: field 'rejected': missing required column")
    assert caught.value.field == "rejected" and caught.value.location == f"{path}:1"

    full, no_prompt = {"prompt": "Q", "chosen": "A", "rejected": "B"}, {"chosen": "A", "rejected": "B"}
    later = write_jsonl(tmp_path / "later.jsonl", [full, no_prompt])
    with pytest.raises(DataError, match=rf"{later}:2: field 'prompt': missing required column"):
        load_pairs(str(later))

    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.Table.from_pylist([full, {**full, "prompt": None}]), nulls)
    with pytest.raises(DataError, match=rf"{nulls}\[1\]: field 'prompt': is null"):
        load_pairs(str(nulls))


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "Q", "chosen": "A", "rejected": "B"}\n{"prompt": "Q", "chosen": \n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        load_pairs(str(path))
    listing = tmp_path / "broken.json"
    listing.write_text('[\n{"prompt": "Q",\n "chosen" "A"}]', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{listing}:3: invalid JSON"):
        load_pairs(str(listing))
    not_list = tmp_path / "object.json"
    not_list.write_text('{"prompt": "Q"}', encoding="utf-8")
    with pytest.raises(DataError, match="must hold a list of objects"):
        load_pairs(str(not_list))
    scalar_line = write_jsonl(tmp_path / "scalar.jsonl", [[1, 2]])
    with pytest.raises(DataError, match=rf"{scalar_line}:1: expected an object with named fields, got list"):
        load_pairs(str(scalar_line))


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    good = json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B"}).encode()
    path = tmp_path / "latin1.jsonl"
    latin1 = '{"prompt": "caf\xe9", "chosen": "A", "rejected": "B"}'.encode("latin-1")
    path.write_bytes(good + b"\n" + good + b"\n" + latin1 + b"\n")
    with pytest.raises(DataError, match=rf"{path}:3: not valid UTF-8 \(byte 0xe9 at column 16\)"):
        load_pairs(str(path))
    listing = tmp_path / "latin1.json"
    listing.write_bytes(b"[\n" + good + b",\n" + '{"prompt": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(DataError, match=rf"{listing}:3: not valid UTF-8"):
        load_pairs(str(listing))


def test_empty_and_identical_responses_are_counted_skips(tmp_path):
    path = write_jsonl(
        tmp_path / "skips.jsonl",
        [
            {"prompt": "Q1", "chosen": "", "rejected": "B"},
            {"prompt": "Q2", "chosen": "A", "rejected": "   "},
            {"prompt": "Q3", "chosen": "Same", "rejected": "Same"},
            {"prompt": "   ", "chosen": "A", "rejected": "B"},
            {"prompt": [USER, PARIS], "chosen": "A", "rejected": "B"},
            {"prompt": "Q6", "chosen": "A", "rejected": "B"},
        ],
    )
    report = LoadReport()
    (pair,) = load_pairs(str(path), report=report)
    assert pair.prompt[-1]["content"] == "Q6"
    assert report.skipped == {
        "empty response": 2,
        "chosen equals rejected": 1,
        "empty prompt": 1,
        "prompt does not end with a user turn": 1,
    }
    assert f"{path}:1 (empty response)" in report.examples and f"{path}:3 (chosen equals rejected)" in report.examples


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        ({"prompt": "Q", "chosen": 3, "rejected": "B"}, "chosen", "expected a string or a list of messages, got int"),
        ({"prompt": {"text": "Q"}, "chosen": "A", "rejected": "B"}, "prompt", "got object"),
        ({"prompt": [{"role": "robot", "content": "Q"}], "chosen": "A", "rejected": "B"}, r"prompt\[0\]\.role", "must be one"),
        ({"prompt": [{"role": "user", "content": 5}], "chosen": "A", "rejected": "B"}, r"prompt\[0\]\.content", "a string"),
        ({"prompt": [USER], "chosen": [USER], "rejected": [LYON]}, r"chosen\[0\]\.role", "expected role 'assistant'"),
        ({"prompt": [USER], "chosen": [PARIS, LYON], "rejected": [LYON]}, "chosen", "expected one assistant message"),
        ({"prompt": "Q", "chosen": "A", "rejected": "B", "margin": "big"}, "margin", "expected a number, got string"),
        ({"prompt": "Q", "chosen": "A", "rejected": "B", "margin": True}, "margin", "expected a number, got boolean"),
        ({"prompt": "Q", "chosen": "A", "rejected": "B", "source": 12}, "source", "expected a string"),
        ({"chosen": "text", "rejected": [LYON]}, "rejected", "must both be strings or both lists"),
    ],
)
def test_wrong_types_are_data_errors_naming_the_field(tmp_path, record, field, message):
    path = write_jsonl(tmp_path / "types.jsonl", [record])
    with pytest.raises(DataError, match=rf"{path}:1: field '{field}': .*{message}"):
        load_pairs(str(path))


def test_missing_file_split_on_file_and_nothing_usable(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_pairs(str(tmp_path / "absent.jsonl"))
    path = write_jsonl(tmp_path / "ok.jsonl", _records())
    with pytest.raises(DataError, match="a file has no splits"):
        load_pairs(str(path), split="train")
    useless = write_jsonl(tmp_path / "useless.jsonl", [{"prompt": "Q", "chosen": "A", "rejected": "A"}] * 3)
    with pytest.raises(DataError, match="no usable preference pairs.*chosen equals rejected: 3"):
        load_pairs(str(useless))
    unsupported = tmp_path / "pairs.csv"
    unsupported.write_text("prompt,chosen,rejected\n", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported file type"):
        load_pairs(str(unsupported))


def test_empty_sources_are_errors_not_empty_lists(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n\n", encoding="utf-8")
    empty_list = tmp_path / "empty.json"
    empty_list.write_text("[]", encoding="utf-8")
    empty_gz = tmp_path / "empty.jsonl.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    no_rows = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=pa.schema([("chosen", pa.string()), ("rejected", pa.string())])), no_rows)
    for path in (empty, blank, empty_list, empty_gz, no_rows):
        with pytest.raises(DataError, match=rf"^{path}: holds no records"):
            load_pairs(str(path))
    assert load_pairs(str(empty), limit=0) == []


def test_json_that_python_cannot_read_names_file_and_line(tmp_path):
    good = json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B"})
    deep = tmp_path / "deep.jsonl"
    deep.write_text(good + "\n" + "[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{deep}:2: invalid JSON: nested too deeply"):
        load_pairs(str(deep))
    huge = tmp_path / "huge.jsonl"
    huge.write_text(good + "\n" + '{"prompt": "Q", "chosen": "A", "rejected": "B", "margin": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataError, match=rf"{huge}:2: invalid JSON: Exceeds the limit"):
        load_pairs(str(huge))
    deep_list = tmp_path / "deep.json"
    deep_list.write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(DataError, match=rf"{deep_list}: invalid JSON: nested too deeply"):
        load_pairs(str(deep_list))


def test_unpaired_surrogate_is_an_error_naming_the_field(tmp_path):
    # Valid JSON (an escape), but no tokenizer can encode it.
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"prompt": "Q", "chosen": "A", "rejected": "B"}\n{"prompt": "Q", "chosen": "A\\ud800", "rejected": "B"}\n')
    with pytest.raises(DataError, match=rf"{path}:2: field 'chosen': holds an unpaired surrogate '\\ud800' at character 2"):
        load_pairs(str(path))


def test_damaged_containers_are_data_errors(tmp_path):
    import datasets

    truncated_gz = tmp_path / "truncated.jsonl.gz"
    truncated_gz.write_bytes(gzip.compress(json.dumps(_records()[0]).encode() + b"\n")[:-6])
    with pytest.raises(DataError, match=rf"{truncated_gz}: cannot read file"):
        load_pairs(str(truncated_gz))
    not_parquet = tmp_path / "garbage.parquet"
    not_parquet.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(DataError, match=rf"{not_parquet}: cannot read as Parquet"):
        load_pairs(str(not_parquet))
    damaged_pages = tmp_path / "damaged.parquet"
    pq.write_table(pa.Table.from_pylist(_records()), damaged_pages)
    raw = bytearray(damaged_pages.read_bytes())
    raw[4:40] = b"\xff" * 36  # the first page header, just after the leading magic bytes
    damaged_pages.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"{damaged_pages}\[0\]: cannot read Parquet rows"):
        load_pairs(str(damaged_pages))
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(_records()).save_to_disk(str(saved))
    for arrow_file in saved.glob("*.arrow"):
        arrow_file.unlink()
    with pytest.raises(DataError, match=rf"{saved}: cannot read as a saved datasets folder: FileNotFoundError"):
        load_pairs(str(saved))
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps(_records()[0]) + '\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{folder / 'train.jsonl'}:2: invalid JSON"):
        load_pairs(str(folder))


def test_skips_are_logged_when_the_caller_passes_no_report(tmp_path, caplog):
    path = write_jsonl(tmp_path / "skip.jsonl", [{"prompt": "Q", "chosen": "A", "rejected": "A"}, *_records()])
    with caplog.at_level(logging.WARNING, logger="rewardlab.data.loaders"):
        pairs = load_pairs(str(path))
    assert len(pairs) == 2
    assert "skipped 1 (chosen equals rejected: 1)" in caplog.text and f"{path}:1" in caplog.text


def test_report_summary_without_skips():
    report = LoadReport(source="x.jsonl", format="standard", kept=3)
    assert report.summary() == "kept 3 pairs from x.jsonl [standard]; skipped 0"
