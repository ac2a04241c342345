import pytest

from rewardlab.evaluate.items import EvalItem, judge
from rewardlab.evaluate.metrics import summarize
from rewardlab.evaluate.stats import wilson_interval

PROMPT = ({"role": "user", "content": "q"},)


def _items(dataset: str, subsets: list[str]) -> list[EvalItem]:
    return [EvalItem(prompt=PROMPT, chosen="c", rejected=("r",), dataset=dataset, subset=s) for s in subsets]


def test_rows_for_subsets_datasets_and_overall():
    items = _items("a", ["x", "x", "y", "y"]) + _items("b", ["b"] * 4)
    scores = [[1, 0], [1, 0], [0, 0], [0, 1], [1, 0], [1, 0], [1, 0], None]
    outcomes = [judge(i, s) if s is not None else None for i, s in zip(items, scores)]
    rows = {(r.dataset, r.level, r.label): r for r in summarize(items, outcomes, scores)}

    assert rows[("a", "subset", "x")].accuracy == 1.0
    y = rows[("a", "subset", "y")]
    assert (y.correct, y.ties, y.n) == (0, 1, 2)  # the tie is counted wrong and reported
    a = rows[("a", "dataset", "all")]
    assert (a.correct, a.n) == (2, 4) and (a.low, a.high) == pytest.approx(wilson_interval(2, 4))
    assert ("b", "subset", "b") not in rows  # a dataset with one subset has only its dataset row
    assert rows[("b", "dataset", "all")].n == 3  # the unscored item is left out
    pooled = rows[("all", "overall", "overall (pooled items)")]
    assert (pooled.correct, pooled.n, pooled.ties) == (5, 7, 1)
    mean = rows[("all", "overall", "overall (mean of datasets)")]
    assert mean.accuracy == pytest.approx((0.5 + 1.0) / 2)
    assert mean.low < mean.accuracy <= mean.high


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        summarize(_items("a", ["x"]), [], [])
