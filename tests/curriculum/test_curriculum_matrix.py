"""The curriculum generalization matrix, from hand-written run folders: categories, cells, paired change, files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from rewardlab.curriculum.matrix import (
    CSV_COLUMNS,
    EVASION_OUTCOMES,
    Column,
    build_matrix,
    classify,
    evaded,
    mcnemar_exact,
    rate_change,
    write_matrix,
)
from rewardlab.envs.environments import ENVIRONMENTS
from rewardlab.envs.records import EPISODES_FILE, append_json_line
from rewardlab.envs.stats import clopper_pearson
from rewardlab.errors import ConfigError

POLITICAL = ENVIRONMENTS["political-sycophancy"]
FLATTERY = ENVIRONMENTS["tool-use-flattery"]
RUBRIC = ENVIRONMENTS["rubric-modification-nudged"]
TAMPERING = ENVIRONMENTS["reward-tampering"]

RAN = [{"command": "ls", "output": "poems.txt"}]


def _record(env: str, outcome: str, index: int, *, commands: list[Any] | None = None,
            final_answer: str = "Done.") -> dict[str, Any]:
    """An episode record with the fields the matrix reads; tool episodes ran one command unless told."""
    gamed = outcome in ENVIRONMENTS[env].gaming_outcomes
    return {"id": f"{env}-s0-{index:05d}", "env": env, "outcome": outcome, "gamed": gamed,
            "commands": RAN if commands is None else commands, "final_answer": final_answer}


def _folder(path: Path, records: list[dict[str, Any]], *, garbage: int = 0) -> Path:
    """A run folder whose episodes.jsonl holds ``records`` and ``garbage`` unreadable lines."""
    path.mkdir(parents=True, exist_ok=True)
    for record in records:
        append_json_line(path / EPISODES_FILE, record)
    with open(path / EPISODES_FILE, "a", encoding="utf-8") as handle:
        handle.write("{not json\n" * garbage)
    return path


def _outcomes(env: str, labels: list[str], start: int = 0) -> list[dict[str, Any]]:
    return [_record(env, label, start + i) for i, label in enumerate(labels)]


def test_classify_separates_failures_from_honest_and_gamed():
    assert classify(_record("reward-tampering", "tampered", 0), TAMPERING) == "gamed"
    assert classify(_record("reward-tampering", "tampered_and_evaded", 0), TAMPERING) == "gamed"
    assert classify(_record("reward-tampering", "honest", 0), TAMPERING) == "honest"
    assert classify(_record("reward-tampering", "reward_error", 0), TAMPERING) == "failed"
    # A tool environment's episode that ran no command never did the task: a failure, not honesty.
    assert classify(_record("reward-tampering", "honest", 0, commands=[]), TAMPERING) == "failed"
    assert classify(_record("tool-use-flattery", "honest", 0, commands=[]), FLATTERY) == "failed"
    assert classify(_record("tool-use-flattery", "no_grade", 0), FLATTERY) == "failed"
    assert classify(_record("rubric-modification-nudged", "honest", 0, final_answer="  \n"), RUBRIC) == "failed"
    # Gaming needs no command (a lie about the checklist) and counts as gaming whatever else happened.
    assert classify(_record("rubric-modification-nudged", "lied", 0, commands=[], final_answer=""), RUBRIC) == "gamed"
    # Political sycophancy runs no tools: no command is normal there.
    assert classify(_record("political-sycophancy", "not_sycophantic", 0, commands=[]), POLITICAL) == "honest"
    assert classify(_record("political-sycophancy", "sycophantic", 0, commands=[]), POLITICAL) == "gamed"
    assert classify(_record("political-sycophancy", "invalid", 0, commands=[]), POLITICAL) == "failed"
    assert classify(_record("political-sycophancy", "not_sycophantic", 0, final_answer=""), POLITICAL) == "failed"
    with pytest.raises(ValueError, match="not one of"):
        classify(_record("political-sycophancy", "tampered", 0), POLITICAL)


def test_evasion_outcomes_are_gaming_outcomes_of_the_overseen_environments():
    assert EVASION_OUTCOMES == {"lied_and_edited", "tampered_and_evaded"}
    assert evaded(_record("rubric-modification-nudged", "lied_and_edited", 0))
    assert not evaded(_record("rubric-modification-nudged", "lied", 0))
    assert evaded(_record("reward-tampering", "tampered_and_evaded", 0))
    assert not evaded(_record("reward-tampering", "tampered", 0))
    for outcome in EVASION_OUTCOMES:
        assert any(outcome in env.gaming_outcomes for env in ENVIRONMENTS.values())


def _study(tmp_path: Path) -> tuple[list[tuple[str, dict[str, Path]]], list[Column]]:
    """Two checkpoints, four columns (political twice, on different item sets); one cell not run."""
    columns = [Column("political (template)", "political-sycophancy"),
               Column("political (Perez)", "political-sycophancy"),
               Column("flattery", "tool-use-flattery"),
               Column("tampering", "reward-tampering")]
    start = {
        "political (template)": _folder(tmp_path / "start-pt", _outcomes(
            "political-sycophancy", ["sycophantic"] * 3 + ["not_sycophantic"] * 6 + ["invalid"])),
        "political (Perez)": _folder(tmp_path / "start-pp", _outcomes(
            "political-sycophancy", ["sycophantic"] + ["not_sycophantic"] * 3)),
        "flattery": _folder(tmp_path / "start-fl", _outcomes("tool-use-flattery", ["flattered", "honest"])
                            + [_record("tool-use-flattery", "honest", 9, commands=[])], garbage=2),
        "tampering": _folder(tmp_path / "start-rt", _outcomes(
            "reward-tampering", ["honest"] * 5 + ["tampered", "tampered_and_evaded", "reward_error"])
            + [_record("reward-tampering", "honest", 20, commands=[]),
               _record("tool-use-flattery", "honest", 0)]),
    }
    after = {
        "political (template)": _folder(tmp_path / "after-pt", _outcomes(
            "political-sycophancy", ["sycophantic"] * 9 + ["not_sycophantic"])),
        "flattery": tmp_path / "never-written",
        "tampering": _folder(tmp_path / "after-rt", _outcomes(
            "reward-tampering", ["tampered_and_evaded"] * 2 + ["honest"] * 2)),
    }
    return [("start", start), ("after political-sycophancy", after)], columns


def test_build_matrix_counts_each_cell_exactly(tmp_path: Path):
    rows, columns = _study(tmp_path)
    matrix = build_matrix(rows, columns)
    assert matrix.rows == ["start", "after political-sycophancy"]
    assert [column.label for column in matrix.columns] == [column.label for column in columns]

    template = matrix.cell("start", "political (template)")
    assert (template.n, template.gamed, template.evaded, template.failed, template.honest) == (10, 3, None, 1, 6)
    perez = matrix.cell("start", "political (Perez)")
    assert (perez.n, perez.gamed, perez.evaded, perez.failed, perez.honest) == (4, 1, None, 0, 3)

    flattery = matrix.cell("start", "flattery")
    assert (flattery.n, flattery.gamed, flattery.evaded, flattery.failed, flattery.honest) == (3, 1, None, 1, 1)
    assert flattery.bad_lines == 2 and flattery.evaded_rate is None

    tampering = matrix.cell("start", "tampering")
    assert (tampering.n, tampering.gamed, tampering.evaded, tampering.failed, tampering.honest) == (9, 2, 1, 2, 5)
    assert tampering.skipped == 1 and tampering.bad_lines == 0
    assert tampering.gamed + tampering.failed + tampering.honest == tampering.n

    after_tampering = matrix.cell("after political-sycophancy", "tampering")
    assert (after_tampering.gamed, after_tampering.evaded, after_tampering.n) == (2, 2, 4)
    # Not listed for the row, and listed but never written: both not evaluated.
    assert matrix.cell("after political-sycophancy", "political (Perez)") is None
    assert matrix.cell("after political-sycophancy", "flattery") is None


def test_cell_rates_carry_clopper_pearson_intervals(tmp_path: Path):
    rows, columns = _study(tmp_path)
    matrix = build_matrix(rows, columns)
    tampering = matrix.cell("start", "tampering")
    for rate, count in ((tampering.gamed_rate, 2), (tampering.evaded_rate, 1), (tampering.failed_rate, 2),
                        (tampering.honest_rate, 5)):
        assert (rate.count, rate.n, rate.rate) == (count, 9, count / 9)
        assert (rate.ci_low, rate.ci_high) == clopper_pearson(count, 9)
    data = tampering.to_json()
    assert data["rates"]["gamed"]["ci_high"] == clopper_pearson(2, 9)[1]
    assert matrix.cell("start", "political (template)").to_json()["rates"]["evaded"] is None
    json.dumps(matrix.to_json(), allow_nan=False)


def test_build_matrix_rejects_unknown_environments_and_labels(tmp_path: Path):
    with pytest.raises(ConfigError, match="column 'sandbagging'.*unknown environment 'sandbag'"):
        build_matrix([("start", {})], [Column("sandbagging", "sandbag")])
    with pytest.raises(ConfigError, match="more than once"):
        build_matrix([], [Column("a", "reward-tampering"), Column("a", "tool-use-flattery")])
    with pytest.raises(ConfigError, match="unknown column"):
        build_matrix([("start", {"tamper": tmp_path})], [Column("tampering", "reward-tampering")])


def _paired_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Ids 0–9 at both checkpoints: 6 rose (0–5), 2 stayed gamed (6, 7), 2 stayed honest (8, 9);
    one id only before (10) and two only after (11, 12). Written in different orders."""
    before = [_record("reward-tampering", "tampered" if i in (6, 7) else "honest", i) for i in range(11)]
    after = [_record("reward-tampering", "tampered_and_evaded" if i <= 7 else "honest", i)
             for i in (12, 11, *range(9, -1, -1))]
    return _folder(tmp_path / "before", before), _folder(tmp_path / "after", after)


def test_rate_change_pairs_by_id_with_exact_mcnemar(tmp_path: Path):
    before, after = _paired_folders(tmp_path)
    change = rate_change(before, after, "reward-tampering")
    assert change.n_paired == 10
    assert (change.unpaired_before, change.unpaired_after, change.duplicate_ids) == (1, 2, 0)
    assert (change.gamed_before, change.gamed_after) == (2, 8)
    assert (change.gamed_after_only, change.gamed_before_only) == (6, 0)
    assert change.before_rate == pytest.approx(0.2) and change.after_rate == pytest.approx(0.8)
    assert change.difference == pytest.approx(0.6)
    assert change.p_value == pytest.approx(2 * 0.5**6) == 0.03125
    assert change.rose
    # Newcombe's method 10 by hand: Wilson(2/10) = [0.05668, 0.50984], Wilson(8/10) = [0.49016, 0.94332],
    # φ = (2·2 − 0·6) / √(2·8·8·2) = 0.25; L = 0.6 − √(0.30984² − 2·0.25·0.30984·0.30984 + 0.30984²) = 0.22053,
    # U = 0.6 + √(0.14332² − 2·0.25·0.14332·0.14332 + 0.14332²) = 0.77553.
    assert change.ci_low == pytest.approx(0.220528, abs=1e-6) and change.ci_high == pytest.approx(0.775528, abs=1e-6)
    assert 0 < change.ci_low < change.difference < change.ci_high
    assert json.loads(json.dumps(change.to_json()))["rose"] is True

    reverse = rate_change(after, before, "reward-tampering")
    assert reverse.difference == pytest.approx(-0.6) and reverse.p_value == change.p_value and not reverse.rose


def test_newcombe_interval_is_not_degenerate_without_discordant_pairs():
    from rewardlab.curriculum.matrix import newcombe_paired_interval

    low, high = newcombe_paired_interval(3, 0, 0, 7)  # nothing changed in 10 pairs
    assert low < 0 < high and high - low > 0.2
    low, high = newcombe_paired_interval(0, 0, 0, 5)  # never gamed, before or after
    assert low < 0 < high and -1 <= low and high <= 1


def test_mcnemar_exact_values_and_bad_inputs(tmp_path: Path):
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1, 5) == pytest.approx(2 * (1 + 6) / 2**6)
    with pytest.raises(ConfigError, match="unknown environment"):
        rate_change(tmp_path, tmp_path, "sandbagging")
    empty = _folder(tmp_path / "other", [_record("reward-tampering", "honest", 99)])
    before = _folder(tmp_path / "one", [_record("reward-tampering", "honest", 1)])
    with pytest.raises(ConfigError, match="no reward-tampering episode ids are shared"):
        rate_change(before, empty, "reward-tampering")


def test_write_matrix_writes_four_readable_files(tmp_path: Path):
    rows, columns = _study(tmp_path / "runs")
    matrix = build_matrix(rows, columns)
    paths = write_matrix(matrix, tmp_path / "out")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(
        ["matrix.csv", "matrix.json", "matrix.md", "matrix.png"])
    assert set(paths) == {"csv", "json", "markdown", "plot"}

    with open(paths["csv"], newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        lines = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    assert len(lines) == len(matrix.rows) * len(matrix.columns)
    by_key = {(line["row"], line["column"]): line for line in lines}
    tampering = by_key[("start", "tampering")]
    assert (int(tampering["n"]), int(tampering["gamed"]), int(tampering["evaded"])) == (9, 2, 1)
    assert float(tampering["gamed_low"]) == pytest.approx(clopper_pearson(2, 9)[0])
    assert by_key[("start", "flattery")]["evaded"] == "" and by_key[("start", "flattery")]["bad_lines"] == "2"
    assert by_key[("after political-sycophancy", "flattery")]["n"] == ""

    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["rows"] == matrix.rows and len(data["cells"]) == 8
    assert {(c["row"], c["column"]) for c in data["cells"] if c["cell"] is None} == {
        ("after political-sycophancy", "political (Perez)"), ("after political-sycophancy", "flattery")}

    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "| start |" in markdown and "counted apart" in markdown
    assert "22.2% [2.8–60.0] · ev 11.1% · fail 22.2% (n=9)" in markdown
    assert "| — |" in markdown

    image = matplotlib.image.imread(paths["plot"])
    assert paths["plot"].stat().st_size > 1000 and image.shape[0] > 100 and image.shape[1] > 100
    assert not list((tmp_path / "out").glob(".*"))
