"""The built-in synthetic generator: verifiable labels, reproducibility, split design, spurious features."""

from __future__ import annotations

import re

import pytest

from rewardlab.data.synthetic import (
    CAPITALS,
    CHEMICAL_SYMBOLS,
    COMPLIANCE_STUBS,
    ID_FAMILIES,
    LIST_CATEGORIES,
    OOD_FAMILIES,
    REFUSALS,
    SPURIOUS_FEATURES,
    UNIT_CONVERSIONS,
    generate,
)

NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5}
INTEGER = re.compile(r"-?\d+")


def _last_integer(text: str) -> int:
    return int(INTEGER.findall(text)[-1])


def _recomputed_answer(family: str, question: str) -> object:
    """The right answer worked out from the question text alone (independently of the generator's meta)."""
    if family == "arithmetic":
        a, op, b = re.search(r"(\d+) (\+|-|x|plus|minus|times) (\d+)", question).groups()
        a, b = int(a), int(b)
        return {"+": a + b, "plus": a + b, "-": a - b, "minus": a - b, "x": a * b, "times": a * b}[op]
    if family == "units":
        match = re.search(r"How many (\w+) are in (\d+) (\w+)\?", question) or re.search(
            r"Convert (\d+) (\w+) to (\w+)\.", question
        )
        if question.startswith("How many"):
            target, quantity, source = match.groups()
        else:
            quantity, source, target = match.groups()
        factor = {(s, t): f for s, t, f in UNIT_CONVERSIONS}[(source, target)]
        return int(quantity) * factor
    if family == "capitals":
        return CAPITALS[re.search(r"capital (?:city )?of (.+?)[?.]$", question).group(1)]
    if family == "elements":
        return CHEMICAL_SYMBOLS[re.search(r"symbol (?:for|of) (\w+)[?.]$", question).group(1)]
    if family == "letter_case":
        phrase = re.search(r"'(.+)'|: (.+)$", question)
        phrase = phrase.group(1) or phrase.group(2)
        return phrase.upper() if ("capital" in question or "caps" in question) else phrase.lower()
    if family == "list_count":
        return NUMBER_WORDS[re.search(r"(?:exactly|Name) (two|three|four|five) ", question).group(1)]
    raise AssertionError(family)


def _check_right_and_wrong(family: str, question: str, right: str, wrong: str) -> None:
    answer = _recomputed_answer(family, question) if family != "refusal" else None
    if family in ("arithmetic", "units"):
        assert _last_integer(right) == answer
        assert _last_integer(wrong) != answer
    elif family in ("capitals", "elements"):
        assert re.search(rf"\b{re.escape(answer)}\.?$", right)
        assert not re.search(rf"\b{re.escape(answer)}\b", wrong.split(" is ")[-1])
    elif family == "letter_case":
        assert right == answer
        assert wrong != answer and wrong.lower() == answer.lower()
    elif family == "list_count":
        category = question.rstrip(".").split()[-1] if "exactly" in question else question.split()[2].rstrip(",")
        right_items, wrong_items = right.split(", "), wrong.split(", ")
        assert len(right_items) == answer and len(set(right_items)) == answer
        assert len(wrong_items) != answer
        assert set(right_items) | set(wrong_items) <= set(LIST_CATEGORIES[category])
    elif family == "refusal":
        assert right in REFUSALS and wrong in COMPLIANCE_STUBS
    else:
        raise AssertionError(family)


@pytest.mark.parametrize("split", ["id", "ood"])
def test_chosen_is_verifiably_right_and_rejected_wrong(split):
    pairs = generate(split, n=600, seed=11)
    assert len(pairs) == 600
    for pair in pairs:
        meta = pair.meta
        question = pair.prompt[-1]["content"]
        assert [m["role"] for m in pair.prompt] == ["user"]
        _check_right_and_wrong(meta["family"], question, meta["chosen_core"], meta["rejected_core"])
        # Exactly one side carries the spurious feature; the other is the bare answer.
        if meta["feature_side"] == "chosen":
            assert pair.rejected == meta["rejected_core"]
            assert meta["chosen_core"] in pair.chosen and pair.chosen != meta["chosen_core"]
        else:
            assert pair.chosen == meta["chosen_core"]
            assert meta["rejected_core"] in pair.rejected and pair.rejected != meta["rejected_core"]
        assert pair.chosen != pair.rejected


def test_facts_spot_check():
    assert CAPITALS["France"] == "Paris" and CAPITALS["Australia"] == "Canberra" and CAPITALS["Canada"] == "Ottawa"
    assert CHEMICAL_SYMBOLS["gold"] == "Au" and CHEMICAL_SYMBOLS["potassium"] == "K"
    assert CHEMICAL_SYMBOLS["tin"] == "Sn" and CHEMICAL_SYMBOLS["mercury"] == "Hg"
    assert len(set(CAPITALS.values())) == len(CAPITALS)
    assert len(set(CHEMICAL_SYMBOLS.values())) == len(CHEMICAL_SYMBOLS)


def test_same_seed_same_pairs_and_other_seed_other_pairs():
    def as_tuples(pairs):
        return [(p.prompt, p.chosen, p.rejected, p.source) for p in pairs]

    assert as_tuples(generate("id", n=50, seed=3)) == as_tuples(generate("id", n=50, seed=3))
    assert as_tuples(generate("ood", n=50, seed=3)) == as_tuples(generate("ood", n=50, seed=3))
    assert as_tuples(generate("id", n=50, seed=3)) != as_tuples(generate("id", n=50, seed=4))


def test_split_families_are_disjoint_and_balanced():
    id_pairs, ood_pairs = generate("id", n=400, seed=0), generate("ood", n=399, seed=0)
    id_counts = {f: sum(p.meta["family"] == f for p in id_pairs) for f in ID_FAMILIES}
    ood_counts = {f: sum(p.meta["family"] == f for p in ood_pairs) for f in OOD_FAMILIES}
    assert set(id_counts.values()) == {100}
    assert set(ood_counts.values()) == {133}
    assert not set(ID_FAMILIES) & set(OOD_FAMILIES)
    assert {p.meta["held_out_family"] for p in id_pairs} == {False}
    assert {p.meta["held_out_family"] for p in ood_pairs} == {True}
    assert {p.meta["feature"] for p in id_pairs} == set(SPURIOUS_FEATURES)


def test_id_and_ood_never_share_items_across_a_seed_range():
    def items(split):
        return {(p.prompt[-1]["content"], p.chosen) for seed in range(5) for p in generate(split, n=200, seed=seed)}

    id_items, ood_items = items("id"), items("ood")
    id_prompts = {prompt for prompt, _ in id_items}
    assert not id_items & ood_items
    assert not id_prompts & {prompt for prompt, _ in ood_items}


@pytest.mark.parametrize(("correlation", "split", "expected"), [(0.8, "id", 0.8), (0.8, "ood", 0.2), (0.5, "id", 0.5)])
def test_spurious_correlation_is_respected(correlation, split, expected):
    pairs = generate(split, n=3000, seed=1, spurious_correlation=correlation)
    on_chosen = sum(p.meta["feature_side"] == "chosen" for p in pairs) / len(pairs)
    # Binomial standard deviation at n=3000 is <= 0.0092; allow about 4 sigma.
    assert abs(on_chosen - expected) < 0.037
    for pair in pairs:
        condition = "aligned" if pair.meta["feature_side"] == "chosen" else "reversed"
        assert pair.meta["condition"] == condition
        assert pair.source == f"synthetic:{split}/{pair.meta['family']}/{condition}"


def test_extreme_correlations_are_exact():
    assert {p.meta["feature_side"] for p in generate("id", n=200, spurious_correlation=1.0)} == {"chosen"}
    assert {p.meta["feature_side"] for p in generate("ood", n=200, spurious_correlation=1.0)} == {"rejected"}
    assert {p.meta["feature_side"] for p in generate("id", n=200, spurious_correlation=0.0)} == {"rejected"}


def test_length_feature_makes_its_side_longer_and_texts_stay_short():
    pairs = generate("id", n=800, seed=2)
    padded = [p for p in pairs if p.meta["feature"] == "length"]
    assert padded
    for pair in padded:
        longer, shorter = (pair.chosen, pair.rejected)
        if pair.meta["feature_side"] == "rejected":
            longer, shorter = shorter, longer
        assert len(longer) > len(shorter) + 20
    for pair in pairs + generate("ood", n=800, seed=2):
        assert len(pair.prompt[-1]["content"]) < 120
        assert len(pair.chosen) < 160 and len(pair.rejected) < 160


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        generate("test")
    with pytest.raises(ValueError, match="spurious_correlation"):
        generate("id", spurious_correlation=1.5)
    with pytest.raises(ValueError, match="n must be"):
        generate("id", n=-1)
    assert generate("id", n=0) == []
