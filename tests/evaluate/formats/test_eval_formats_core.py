import json

from rewardlab.evaluate.formats import load_eval_dataset, parse_data_spec


def test_hh_rlhf_raw_through_the_core_loader(shared_data):
    path = shared_data / "anthropic-hh-rlhf" / "harmless-base-test.jsonl.gz"
    dataset = load_eval_dataset(f"hh=pairs:{path}")
    assert dataset.name == "hh" and dataset.format == "pairs"
    # 2,312 records: every one is either an item or a counted skip
    assert len(dataset.items) + dataset.report.total_skipped == 2312
    assert dataset.report.skipped["prompts differ"] == 5
    assert all(item.prompt[-1]["role"] == "user" for item in dataset.items)


def test_trl_formats_through_the_core_loader(tmp_path):
    standard = tmp_path / "standard.jsonl"
    standard.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    conversational = tmp_path / "conversational.jsonl"
    conversational.write_text(json.dumps({
        "prompt": [{"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }) + "\n")
    for path in (standard, conversational):
        dataset = load_eval_dataset(str(path))
        assert dataset.format == "pairs" and len(dataset.items) == 1
        item = dataset.items[0]
        assert (item.prompt, item.chosen, item.rejected) == (({"role": "user", "content": "2+2?"},), "4", ("5",))
    assert dataset.name == "conversational"


def test_data_spec_parsing():
    assert parse_data_spec("synthetic:ood").format is None
    assert parse_data_spec("synthetic:ood").path == "synthetic:ood"
    spec = parse_data_spec("uf=unified-feedback:/data/val.parquet")
    assert (spec.name, spec.format, spec.path) == ("uf", "unified-feedback", "/data/val.parquet")
    assert parse_data_spec("llmbar:x.json").format == "llmbar"
