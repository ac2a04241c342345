"""RM-Bench files: the documented record layout, the reference repository's per-domain files, bad records."""

import json

import pytest

from rewardlab.cli import main
from rewardlab.data.loaders import DataError
from rewardlab.evaluate.formats import detect_eval_format, load_eval_dataset
from tests.evaluate.test_eval_rmbench import rmbench_record, write_jsonl


def test_record_becomes_one_item_with_three_chosen_then_three_rejected(tmp_path):
    path = write_jsonl(tmp_path / "rm.jsonl", [rmbench_record(7, "safety-refuse")])
    (item,) = load_eval_dataset(str(path)).items
    assert item.format == "rm-bench" and item.dataset == "rm-bench"
    assert (item.subset, item.meta["domain"], item.meta["id"]) == ("safety-refuse", "safety", 7)
    assert [response for _, response in item.candidates()] == [
        "right 7 short", "right 7 long", "right 7 **long**", "wrong 7 short", "wrong 7 long", "wrong 7 **long**"]
    assert item.prompt == ({"role": "user", "content": "question 7"},)


def test_reference_per_domain_file_takes_its_domain_from_the_file_name(tmp_path):
    record = rmbench_record(3, "code")
    del record["domain"]
    path = tmp_path / "code_filtered.json"
    path.write_text(json.dumps([record]))
    assert detect_eval_format(str(path)) == "rm-bench"
    (item,) = load_eval_dataset(str(path)).items
    assert (item.subset, item.meta["domain"]) == ("code", "code")


def test_missing_domain_names_the_file_and_line(tmp_path):
    record = rmbench_record(1, "chat")
    del record["domain"]
    path = write_jsonl(tmp_path / "mine.jsonl", [rmbench_record(0, "chat"), record])
    with pytest.raises(DataError, match=rf"^{path}:2: missing field 'domain'") as error:
        load_eval_dataset(f"rm-bench:{path}")
    assert "\n" not in str(error.value)


def test_wrong_number_of_styles_names_the_record(tmp_path):
    record = rmbench_record(1, "math")
    record["chosen"] = record["chosen"][:2]
    path = tmp_path / "rm.json"
    path.write_text(json.dumps([rmbench_record(0, "math"), record]))
    with pytest.raises(DataError, match=rf"{path}\[1\].*'chosen' must be a list of 3 strings .*got 2 entries"):
        load_eval_dataset(f"rm-bench:{path}")


def test_unknown_domain_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "rm.jsonl", [rmbench_record(0, "poetry")])
    with pytest.raises(DataError, match=rf"{path}:1: field 'domain' must start with chat, math, code, safety; got 'poetry'"):
        load_eval_dataset(str(path))


def test_cli_prints_a_one_line_error(tmp_path, capsys):
    record = rmbench_record(0, "chat")
    record["rejected"] = "just one"
    path = write_jsonl(tmp_path / "rm.jsonl", [record])
    assert main(["eval", "unused-model", "--data", f"rm-bench:{path}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{path}:1" in err and "'rejected' must be a list of 3 strings" in err and "got str" in err


def test_reference_data_folder_is_read_file_by_file(tmp_path):
    def without_domain(ident, domain):
        record = rmbench_record(ident, domain)
        del record["domain"]
        return record

    (tmp_path / "chat_filtered.json").write_text(json.dumps([without_domain(0, "chat"), without_domain(1, "chat")]))
    (tmp_path / "safety-refuse_filtered.json").write_text(json.dumps([without_domain(2, "safety-refuse")]))
    # the reference data/ folder also holds total_dataset.json, the same records again with their domain
    (tmp_path / "total_dataset.json").write_text(json.dumps([rmbench_record(i, "chat") for i in range(3)]))
    dataset = load_eval_dataset(f"rm-bench:{tmp_path}")
    assert [(i.meta["id"], i.subset, i.meta["domain"]) for i in dataset.items] == [
        (0, "chat", "chat"), (1, "chat", "chat"), (2, "safety-refuse", "safety")]
    assert dataset.items[2].meta["source"] == f"{tmp_path / 'safety-refuse_filtered.json'}[0]"
