import json

import matplotlib.image
import pytest

from rewardlab.cli import main
from rewardlab.evaluate.runner import evaluate_models, parse_model_spec
from rewardlab.evaluate.scorers import load_scorer
from rewardlab.evaluate.suites import load_data_specs
from rewardlab.evaluate.workflow import run_evaluation

PAIRS = [
    ("Name a primary colour.", "Red is a primary colour.", "Bananas are yellow."),
    ("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5."),
    ("Say hello in French.", "Bonjour!", "Hola!"),
    ("Identical outputs give a tie.", "Same answer.", "Same answer."),
]


@pytest.fixture()
def llmbar_file(tmp_path):
    path = tmp_path / "tiny_llmbar.json"
    path.write_text(json.dumps([
        {"input": q, "output_1": good, "output_2": bad, "label": 1} for q, good, bad in PAIRS
    ]))
    return path


def test_side_by_side_markdown_json_and_png(tiny_models, llmbar_file, tmp_path):
    out = tmp_path / "report"
    result = run_evaluation(
        [f"lin={tiny_models['linear']}", f"mlp={tiny_models['mlp']}"],
        data=[f"tiny=llmbar:{llmbar_file}"], out_dir=out, batch_size=2, progress=False,
    )
    assert [m.name for m in result.models] == ["lin", "mlp"]
    for model in result.models:
        whole = next(r for r in model.rows if r.level == "dataset")
        assert whole.n == 4 and whole.ties == 1  # the identical pair scores equal: a tie, counted wrong
        assert whole.correct <= 3 and whole.accuracy == whole.correct / 4
        assert whole.low <= whole.accuracy <= whole.high
        assert model.pairs_per_second > 0

    markdown = (out / "report.md").read_text()
    assert "| dataset | subset | n | lin | mlp |" in markdown
    assert "Wilson score interval" in markdown and "pairs/s" in markdown
    report = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["lin", "mlp"]
    assert report["intervals"]["items"].startswith("Wilson")
    assert report["models"][0]["rows"][0]["ties"] == 1
    image = matplotlib.image.imread(out / "accuracy.png")
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert (out / "scores" / "lin" / "tiny.json").is_file() and (out / "scores" / "mlp" / "tiny.json").is_file()


def test_rerun_resumes_from_the_score_cache(tiny_models, llmbar_file, tmp_path):
    datasets = load_data_specs([f"tiny=llmbar:{llmbar_file}"])
    calls = []

    def counting_loader(path, **kwargs):
        scorer = load_scorer(path, **kwargs)
        original = scorer.score_with_cuts

        def score_with_cuts(prompts, responses):
            calls.append(len(prompts))
            return original(prompts, responses)

        scorer.score_with_cuts = score_with_cuts
        return scorer

    models = [parse_model_spec(f"lin={tiny_models['linear']}")]
    first = evaluate_models(models, datasets, cache_dir=tmp_path, progress=False, loader=counting_loader)
    assert sum(calls) == 8
    second = evaluate_models(models, datasets, cache_dir=tmp_path, progress=False, loader=counting_loader)
    assert sum(calls) == 8  # nothing scored again
    assert second.models[0].item_scores == first.models[0].item_scores


def test_cli_eval_json_and_errors(tiny_models, llmbar_file, tmp_path, capsys):
    code = main(["eval", f"lin={tiny_models['linear']}", "--data", f"llmbar:{llmbar_file}", "--json", "--no-progress"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"][0]["name"] == "lin" and report["datasets"][0]["items"] == 4

    assert main(["eval", str(tiny_models["linear"]), "--data", str(llmbar_file), "--implicit-dpo"]) == 2
    assert "--ref" in capsys.readouterr().err
    assert main(["eval", str(tiny_models["linear"]), "--suite", "offline", "--data-root", str(tmp_path)]) == 2
    assert "--data-root" in capsys.readouterr().err
