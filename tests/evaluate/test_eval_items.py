import pytest

from rewardlab.data.pair import PreferencePair
from rewardlab.evaluate.items import REJECTED_PROMPT_KEY, EvalItem, Outcome, item_from_pair, judge

PROMPT = ({"role": "user", "content": "Hi?"},)


def _pair_item() -> EvalItem:
    return EvalItem(prompt=PROMPT, chosen="good", rejected=("bad",), dataset="d", subset="s")


def test_strictly_greater_is_correct_and_equal_is_a_tie():
    item = _pair_item()
    assert judge(item, [0.5, 0.4]) is Outcome.CORRECT
    assert judge(item, [0.4, 0.4]) is Outcome.TIE
    assert judge(item, [0.3, 0.4]) is Outcome.WRONG
    # a difference far below float printing precision still counts
    assert judge(item, [0.4 + 1e-12, 0.4]) is Outcome.CORRECT


def test_best_of_four_needs_the_chosen_answer_above_every_rejected_one():
    item = EvalItem(prompt=PROMPT, chosen="c", rejected=("r1", "r2", "r3"), dataset="rb2", subset="Math")
    assert judge(item, [2.0, 1.0, 1.5, 1.9]) is Outcome.CORRECT
    assert judge(item, [2.0, 1.0, 2.5, 1.9]) is Outcome.WRONG
    assert judge(item, [2.0, 2.0, 1.0, 1.0]) is Outcome.TIE
    with pytest.raises(ValueError):
        judge(item, [1.0, 2.0])


def test_several_correct_answers_must_all_beat_the_rejected_ones():
    item = EvalItem(prompt=PROMPT, chosen="a", also_correct=("b",), rejected=("x",), dataset="rb2", subset="Ties")
    assert [c[1] for c in item.candidates()] == ["a", "b", "x"]
    assert judge(item, [3.0, 2.0, 1.0]) is Outcome.CORRECT
    assert judge(item, [3.0, 0.5, 1.0]) is Outcome.WRONG


def test_item_from_pair_keeps_subset_and_per_side_history():
    other_history = ({"role": "user", "content": "Q1"}, {"role": "assistant", "content": "B1"}, {"role": "user", "content": "Q2"})
    history = ({"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"})
    pair = PreferencePair(prompt=history, chosen="A2", rejected="B2", source="f.jsonl:3",
                          meta={"subset": "human", REJECTED_PROMPT_KEY: other_history})
    item = item_from_pair(pair, "mt-bench")
    assert item.subset == "human" and item.dataset == "mt-bench"
    assert item.candidates() == [(history, "A2"), (other_history, "B2")]
    assert item.meta["source"] == "f.jsonl:3" and REJECTED_PROMPT_KEY not in item.meta
