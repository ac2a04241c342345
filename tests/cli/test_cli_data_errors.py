"""Every kind of bad input the data loader tests cover, through the real `rewardlab train` command.

Each case must end with exit status 2 and one ``error: LOCATION: …`` message naming the file and line
(or record index, or the spec), never a traceback. The cases follow tests/data/test_data_loaders.py
(and the split tests), one group per test there.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewardlab.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD = {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Lyon."}
USER = {"role": "user", "content": "What is the capital of France?"}
PARIS = {"role": "assistant", "content": "Paris."}
LYON = {"role": "assistant", "content": "Lyon."}

# A case writes its bad input under the folder it is given and returns (data spec, expected message),
# where the expected message starts with the location the error must name.
Case = Callable[[Path], tuple[str, str]]


def jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def parquet(path: Path, records: list, schema: pa.Schema | None = None) -> Path:
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)
    return path


def missing_column(d: Path) -> tuple[str, str]:
    path = jsonl(d / "missing.jsonl", [{"prompt": "Q", "chosen": "A"}])
    return str(path), f"{path}:1: field 'rejected': missing required column"


def missing_prompt_later(d: Path) -> tuple[str, str]:
    path = jsonl(d / "later.jsonl", [GOOD, {"chosen": "A", "rejected": "B"}])
    return str(path), f"{path}:2: field 'prompt': missing required column"


def null_in_parquet(d: Path) -> tuple[str, str]:
    path = parquet(d / "nulls.parquet", [GOOD, {**GOOD, "prompt": None}])
    return str(path), f"{path}[1]: field 'prompt': is null"


def malformed_jsonl(d: Path) -> tuple[str, str]:
    path = raw(d / "broken.jsonl", (json.dumps(GOOD) + '\n{"prompt": "Q", "chosen": \n').encode())
    return str(path), f"{path}:2: invalid JSON"


def malformed_json_list(d: Path) -> tuple[str, str]:
    path = raw(d / "broken.json", b'[\n{"prompt": "Q",\n "chosen" "A"}]')
    return str(path), f"{path}:3: invalid JSON"


def json_not_a_list(d: Path) -> tuple[str, str]:
    path = raw(d / "object.json", b'{"prompt": "Q"}')
    return str(path), f"{path}: a .json file must hold a list of objects"


def jsonl_line_not_an_object(d: Path) -> tuple[str, str]:
    path = jsonl(d / "scalar.jsonl", [[1, 2]])
    return str(path), f"{path}:1: expected an object with named fields, got list"


def non_utf8_jsonl(d: Path) -> tuple[str, str]:
    latin1 = '{"prompt": "caf\xe9", "chosen": "A", "rejected": "B"}'.encode("latin-1")
    path = raw(d / "latin1.jsonl", json.dumps(GOOD).encode() + b"\n" + json.dumps(GOOD).encode() + b"\n" + latin1 + b"\n")
    return str(path), f"{path}:3: not valid UTF-8 (byte 0xe9 at column 16)"


def non_utf8_json_list(d: Path) -> tuple[str, str]:
    path = raw(d / "latin1.json", b"[\n" + json.dumps(GOOD).encode() + b",\n" + '{"prompt": "caf\xe9"}]'.encode("latin-1"))
    return str(path), f"{path}:3: not valid UTF-8"


WRONG_TYPES = [
    ({"prompt": "Q", "chosen": 3, "rejected": "B"}, "field 'chosen': expected a string or a list of messages, got int"),
    ({"prompt": {"text": "Q"}, "chosen": "A", "rejected": "B"}, "field 'prompt': expected a string or a list of messages, got object"),
    ({"prompt": [{"role": "robot", "content": "Q"}], "chosen": "A", "rejected": "B"}, "field 'prompt[0].role': role must be one of"),
    ({"prompt": [{"role": "user", "content": 5}], "chosen": "A", "rejected": "B"}, "field 'prompt[0].content': expected a string"),
    ({"prompt": [USER], "chosen": [USER], "rejected": [LYON]}, "field 'chosen[0].role': expected role 'assistant'"),
    ({"prompt": [USER], "chosen": [PARIS, LYON], "rejected": [LYON]}, "field 'chosen': expected one assistant message"),
    ({"prompt": "Q", "chosen": "A", "rejected": "B", "margin": "big"}, "field 'margin': expected a number, got string"),
    ({"prompt": "Q", "chosen": "A", "rejected": "B", "margin": True}, "field 'margin': expected a number, got boolean"),
    ({"prompt": "Q", "chosen": "A", "rejected": "B", "source": 12}, "field 'source': expected a string"),
    ({"chosen": "text", "rejected": [LYON]}, "field 'rejected': chosen and rejected must both be strings or both lists"),
]


def wrong_type(index: int) -> Case:
    record, message = WRONG_TYPES[index]

    def case(d: Path) -> tuple[str, str]:
        path = jsonl(d / "types.jsonl", [record])
        return str(path), f"{path}:1: {message}"

    return case


def missing_file(d: Path) -> tuple[str, str]:
    return str(d / "absent.jsonl"), f"{d / 'absent.jsonl'}: file not found"


def split_on_a_file(d: Path) -> tuple[str, str]:
    path = jsonl(d / "ok.jsonl", [GOOD])
    return f"{path}?split=train", f"{path}?split=train: a file has no splits"


def nothing_usable(d: Path) -> tuple[str, str]:
    path = jsonl(d / "useless.jsonl", [{"prompt": "Q", "chosen": "A", "rejected": "A"}] * 3)
    return str(path), f"{path}: no usable preference pairs: kept 0 pairs from {path} [standard]; skipped 3 " \
        f"(chosen equals rejected: 3); e.g. {path}:1 (chosen equals rejected)"


def unsupported_file_type(d: Path) -> tuple[str, str]:
    path = raw(d / "pairs.csv", b"prompt,chosen,rejected\n")
    return str(path), f"{path}: unsupported file type"


def synthetic(spec: str, message: str) -> Case:
    return lambda d: (spec, f"{spec}: {message}")


def empty(name: str, data: bytes) -> Case:
    def case(d: Path) -> tuple[str, str]:
        path = raw(d / name, data)
        return str(path), f"{path}: holds no records"

    return case


def empty_parquet(d: Path) -> tuple[str, str]:
    path = parquet(d / "empty.parquet", [], pa.schema([("chosen", pa.string()), ("rejected", pa.string())]))
    return str(path), f"{path}: holds no records"


def deeply_nested_line(d: Path) -> tuple[str, str]:
    path = raw(d / "deep.jsonl", json.dumps(GOOD).encode() + b"\n" + b"[" * 100_000 + b"\n")
    return str(path), f"{path}:2: invalid JSON: nested too deeply"


def oversized_integer(d: Path) -> tuple[str, str]:
    path = raw(d / "huge.jsonl", b'{"prompt": "Q", "chosen": "A", "rejected": "B", "margin": ' + b"9" * 5000 + b"}\n")
    return str(path), f"{path}:1: invalid JSON: Exceeds the limit"


def unpaired_surrogate(d: Path) -> tuple[str, str]:
    path = raw(d / "surrogate.jsonl", b'{"prompt": "Q\\udc80", "chosen": "A", "rejected": "B"}\n')
    return str(path), f"{path}:1: field 'prompt[0].content': holds an unpaired surrogate"


def truncated_gzip(d: Path) -> tuple[str, str]:
    path = raw(d / "truncated.jsonl.gz", gzip.compress(json.dumps(GOOD).encode() + b"\n")[:-6])
    return str(path), f"{path}: cannot read file"


def not_parquet(d: Path) -> tuple[str, str]:
    path = raw(d / "garbage.parquet", b"PAR1 this is not a parquet file")
    return str(path), f"{path}: cannot read as Parquet"


def damaged_parquet_pages(d: Path) -> tuple[str, str]:
    path = parquet(d / "damaged.parquet", [GOOD, GOOD])
    data = bytearray(path.read_bytes())
    data[4:40] = b"\xff" * 36  # the first page header, just after the leading magic bytes
    raw(path, bytes(data))
    return str(path), f"{path}[0]: cannot read Parquet rows"


def saved_folder_without_its_data(d: Path) -> tuple[str, str]:
    import datasets

    folder = d / "saved"
    datasets.Dataset.from_list([GOOD]).save_to_disk(str(folder))
    for arrow_file in folder.glob("*.arrow"):
        arrow_file.unlink()
    return str(folder), f"{folder}: cannot read as a saved datasets folder"


def bad_line_in_a_folder_of_files(d: Path) -> tuple[str, str]:
    folder = d / "files"
    folder.mkdir()
    raw(folder / "train.jsonl", (json.dumps(GOOD) + '\n{"prompt": \n').encode())
    return str(folder), f"{folder / 'train.jsonl'}:2: invalid JSON"


def _dataset_dict(d: Path, splits: tuple[str, ...]) -> Path:
    import datasets

    folder = d / "dict"
    datasets.DatasetDict({name: datasets.Dataset.from_list([GOOD]) for name in splits}).save_to_disk(str(folder))
    return folder


def unknown_split(d: Path) -> tuple[str, str]:
    folder = _dataset_dict(d, ("train", "test"))
    return f"{folder}?split=dev", f"{folder}: has no split 'dev'; available: train, test"


def no_train_split(d: Path) -> tuple[str, str]:
    folder = _dataset_dict(d, ("test", "validation"))
    return str(folder), f"{folder}: has no 'train' split (splits: test, validation)"


CASES: dict[str, Case] = {
    # test_missing_required_column_names_file_line_and_field
    "missing-column": missing_column,
    "missing-prompt-on-a-later-line": missing_prompt_later,
    "null-in-parquet": null_in_parquet,
    # test_malformed_json_line_names_file_and_line
    "malformed-jsonl-line": malformed_jsonl,
    "malformed-json-list": malformed_json_list,
    "json-not-a-list": json_not_a_list,
    "jsonl-line-not-an-object": jsonl_line_not_an_object,
    # test_non_utf8_bytes_name_file_and_line
    "non-utf8-jsonl": non_utf8_jsonl,
    "non-utf8-json-list": non_utf8_json_list,
    # test_wrong_types_are_data_errors_naming_the_field
    **{f"wrong-type-{i}": wrong_type(i) for i in range(len(WRONG_TYPES))},
    # test_missing_file_split_on_file_and_nothing_usable
    "missing-file": missing_file,
    "split-on-a-file": split_on_a_file,
    "nothing-usable": nothing_usable,
    "unsupported-file-type": unsupported_file_type,
    # test_bad_synthetic_specs
    "synthetic-unknown-split": synthetic("synthetic:test", "unknown synthetic split 'test'"),
    "synthetic-unknown-option": synthetic("synthetic?size=5", "unknown option 'size'"),
    "synthetic-not-a-number": synthetic("synthetic?n=many", "option n='many' is not a number"),
    "synthetic-out-of-range": synthetic("synthetic?spurious_correlation=2", "spurious_correlation must be in"),
    "synthetic-two-splits": synthetic("synthetic:id?split=ood", "spec names split 'id' but split='ood'"),
    "synthetic-wrong-split": synthetic("synthetic?split=train", "synthetic data has splits id, ood"),
    "synthetic-option-without-value": synthetic("synthetic?n", "option 'n' must look like key=value"),
    # test_empty_sources_are_errors_not_empty_lists
    "empty-jsonl": empty("empty.jsonl", b""),
    "blank-jsonl": empty("blank.jsonl", b"\n  \n\n"),
    "empty-json-list": empty("empty.json", b"[]"),
    "empty-jsonl-gz": empty("empty.jsonl.gz", gzip.compress(b"")),
    "empty-parquet": empty_parquet,
    # test_json_that_python_cannot_read_names_file_and_line
    "deeply-nested-line": deeply_nested_line,
    "oversized-integer": oversized_integer,
    # test_unpaired_surrogate_is_an_error_naming_the_field
    "unpaired-surrogate": unpaired_surrogate,
    # test_damaged_containers_are_data_errors
    "truncated-gzip": truncated_gzip,
    "not-parquet": not_parquet,
    "damaged-parquet-pages": damaged_parquet_pages,
    "saved-folder-without-its-data": saved_folder_without_its_data,
    "bad-line-in-a-folder-of-files": bad_line_in_a_folder_of_files,
    # tests/data/test_data_splits.py
    "unknown-split": unknown_split,
    "no-train-split": no_train_split,
}


def train_args(spec: str, output: Path, *extra: str) -> list[str]:
    return ["train", "--model", "tiny-random", "--data", spec, "--output", str(output), "--max-steps", "1", *extra]


@pytest.mark.parametrize("name", list(CASES))
def test_train_reports_bad_data_in_one_line_and_exits_2(name, tmp_path, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    spec, expected = CASES[name](data_dir)
    code = main(train_args(spec, tmp_path / "out"))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert f"error: {expected}" in err
    assert "Traceback" not in out + err


def test_bad_eval_data_is_reported_the_same_way(tmp_path, capsys):
    spec, expected = malformed_jsonl(tmp_path)
    code = main(train_args("synthetic?n=4", tmp_path / "out", "--eval-data", spec, "--batch-size", "2"))
    out, err = capsys.readouterr()
    assert code == 2 and f"error: {expected}" in err and "Traceback" not in out + err


@pytest.mark.parametrize("name", ["malformed-jsonl-line", "non-utf8-jsonl"])
def test_real_command_exits_2_without_a_traceback(name, tmp_path):
    spec, expected = CASES[name](tmp_path)
    command = [str(Path(sys.executable).with_name("rewardlab")), *train_args(spec, tmp_path / "out")]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert done.returncode == 2, done.stderr
    assert f"error: {expected}" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
