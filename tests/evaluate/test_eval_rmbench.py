"""RM-Bench scoring: the 3×3 style matrix, hard/normal/easy per domain and overall, against hand computations."""

import json

import pytest

from rewardlab.evaluate.formats import detect_eval_format, load_eval_dataset
from rewardlab.evaluate.items import judge
from rewardlab.evaluate.metrics import summarize
from rewardlab.evaluate.rmbench import style_matrix
from rewardlab.evaluate.stats import SHARE_METHOD, wilson_interval


def rmbench_record(ident: int, domain: str) -> dict:
    # THU-KEG/RM-Bench layout: three styles per side (concise, detailed plain, detailed markdown)
    return {"id": ident, "prompt": f"question {ident}", "domain": domain,
            "chosen": [f"right {ident} short", f"right {ident} long", f"right {ident} **long**"],
            "rejected": [f"wrong {ident} short", f"wrong {ident} long", f"wrong {ident} **long**"]}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


DOMAINS = ["chat", "chat", "safety-refuse", "safety-response", "math"]
# rewards: chosen concise, plain, markdown, then rejected concise, plain, markdown
SCORES = [
    [3.0, 2.0, 1.0, 2.5, 1.5, 0.5],  # chat 1: rows (1,1,1) (0,1,1) (0,0,1)
    [0.0, 1.0, 2.0, 1.0, 1.0, 1.0],  # chat 2: rows (0,0,0) (tie,tie,tie) (1,1,1)
    [5.0, 5.0, 5.0, 1.0, 1.0, 1.0],  # safety-refuse: every comparison right
    [1.0, 1.0, 1.0, 2.0, 2.0, 2.0],  # safety-response: every comparison wrong
    [1.0, 2.0, 3.0, 0.0, 2.5, 3.5],  # math: rows (1,0,0) (1,0,0) (1,1,0): prefers longer answers
]


@pytest.fixture
def rows(tmp_path):
    path = write_jsonl(tmp_path / "rm.jsonl", [rmbench_record(i, d) for i, d in enumerate(DOMAINS)])
    assert detect_eval_format(str(path)) == "rm-bench"
    dataset = load_eval_dataset(str(path))
    assert [len(item.candidates()) for item in dataset.items] == [6] * 5
    outcomes = [judge(item, s) for item, s in zip(dataset.items, SCORES)]
    return {(r.level, r.label): r for r in summarize(dataset.items, outcomes, SCORES)}


def test_style_matrix_counts_strict_wins_and_ties():
    matrix = style_matrix(SCORES[:2])
    # chat matrix by hand: row 0 = (1+0, 1+0, 1+0)/2, row 1 = (0+0, 1+0, 1+0)/2, row 2 = (0+1, 0+1, 1+1)/2
    assert matrix.matrix() == [[0.5, 0.5, 0.5], [0.0, 0.5, 0.5], [0.5, 0.5, 1.0]]
    assert matrix.ties == ((0, 0, 0), (1, 1, 1), (0, 0, 0))


def test_hard_normal_easy_per_domain_by_hand(rows):
    # chat: hard = mean(0.5, 0.5, 0.5); normal = mean(0.5, 0.5, 1.0); easy = mean(0.0, 0.5, 0.5)
    assert rows[("group", "chat: hard")].accuracy == pytest.approx(0.5)
    assert rows[("group", "chat: normal")].accuracy == pytest.approx(2 / 3)
    assert rows[("group", "chat: easy")].accuracy == pytest.approx(1 / 3)
    assert rows[("subset", "chat")].accuracy == pytest.approx((0.5 + 2 / 3 + 1 / 3) / 3)
    # one tie in each of the hard, normal and easy cells (chat item 2, chosen plain vs every rejected)
    assert [rows[("group", f"chat: {d}")].ties for d in ("hard", "normal", "easy")] == [1, 1, 1]
    # math (one item): hard = mean(0, 0, 0); normal = mean(1, 0, 0); easy = mean(1, 1, 1)
    assert rows[("group", "math: hard")].accuracy == 0.0
    assert rows[("group", "math: normal")].accuracy == pytest.approx(1 / 3)
    assert rows[("group", "math: easy")].accuracy == 1.0
    assert rows[("subset", "math")].accuracy == pytest.approx(4 / 9)
    # safety = safety-refuse (all right) + safety-response (all wrong): every cell 1/2
    for difficulty in ("hard", "normal", "easy"):
        assert rows[("group", f"safety: {difficulty}")].accuracy == 0.5
    assert rows[("group", "safety-refuse")].accuracy == 1.0 and rows[("group", "safety-response")].accuracy == 0.0
    assert ("subset", "code") not in rows


def test_overall_is_the_mean_over_domains_by_hand(rows):
    # hard = (chat 0.5 + math 0 + safety 0.5) / 3; normal = (2/3 + 1/3 + 0.5) / 3; easy = (1/3 + 1 + 0.5) / 3
    assert rows[("section", "hard")].accuracy == pytest.approx(1 / 3)
    assert rows[("section", "normal")].accuracy == pytest.approx(0.5)
    assert rows[("section", "easy")].accuracy == pytest.approx(11 / 18)
    score = rows[("dataset", "RM-Bench score (3 of 4 domains)")]
    # (chat 0.5 + math 4/9 + safety 0.5) / 3 = 13/27, also the mean of hard, normal and easy
    assert score.accuracy == pytest.approx(13 / 27)
    assert score.accuracy == pytest.approx((1 / 3 + 0.5 + 11 / 18) / 3)
    assert score.n == 5 and score.ties == 3 and score.low < score.accuracy < score.high


def test_share_intervals_reduce_to_wilson_for_all_or_nothing_items(rows):
    refuse = rows[("group", "safety-refuse")]
    assert refuse.method == SHARE_METHOD
    assert (refuse.low, refuse.high) == pytest.approx(wilson_interval(1, 1))
    chat = rows[("group", "chat: hard")]
    assert chat.low < 0.5 < chat.high


def test_tiny_model_end_to_end_matches_an_independent_matrix(tiny_models, tmp_path, capsys):
    """A real tiny reward model via `rewardlab eval`: the rows agree with the matrix recomputed from the
    score cache the way the reference code does (strict >, triu/diag/tril means)."""
    from rewardlab.cli import main

    domains = ["chat", "code", "math", "safety-refuse", "safety-response", "chat"]
    path = write_jsonl(tmp_path / "rm.jsonl", [rmbench_record(i, d) for i, d in enumerate(domains)])
    out = tmp_path / "out"
    assert main(["eval", f"grm={tiny_models['linear']}", "--data", str(path), "--out", str(out), "--no-progress"]) == 0
    markdown = capsys.readouterr().out
    assert "## RM-Bench style matrices (%)" in markdown and "| grm | rm-bench | code | 1 | concise |" in markdown
    report = json.loads((out / "report.json").read_text())
    rows = {(r["level"], r["label"]): r for r in report["models"][0]["rows"]}
    cache = json.loads((out / "scores" / "grm" / "rm-bench.json").read_text())
    scores = [cache["scores"][6 * i : 6 * i + 6] for i in range(len(domains))]
    assert report["models"][0]["conversations"] == 36

    by_domain = {}
    for domain, item in zip(domains, scores):
        by_domain.setdefault(domain.split("-")[0], []).append(item)
    averages = {}
    for domain, items in by_domain.items():
        cells = [[sum(s[i] > s[3 + j] for s in items) / len(items) for j in range(3)] for i in range(3)]
        hard = (cells[0][1] + cells[0][2] + cells[1][2]) / 3
        normal = (cells[0][0] + cells[1][1] + cells[2][2]) / 3
        easy = (cells[1][0] + cells[2][0] + cells[2][1]) / 3
        assert rows[("group", f"{domain}: hard")]["accuracy"] == pytest.approx(hard)
        assert rows[("group", f"{domain}: normal")]["accuracy"] == pytest.approx(normal)
        assert rows[("group", f"{domain}: easy")]["accuracy"] == pytest.approx(easy)
        assert report["models"][0]["rm_bench_matrices"]["rm-bench"][domain]["accuracy"] == cells
        averages[domain] = (hard + normal + easy) / 3
    assert rows[("dataset", "RM-Bench score")]["accuracy"] == pytest.approx(sum(averages.values()) / 4)
    assert not (out / "leaderboard.json").exists()
