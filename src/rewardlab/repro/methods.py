"""The training methods compared by `rewardlab repro grm`: the rows of the GRM paper's Table 1.

Every method shares the base model, training pairs, seeds, steps and optimiser; only the reward
loss, the regularizer and the head differ. Baselines use a linear head, as the paper's classifier
baseline does; the GRM variants use a linear head too, so that each differs from BT in one thing
(its regularizer), and ``grm-sft-mlp`` adds the paper's default MLP head on top of that.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardlab.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """One row of the comparison: how its reward model is trained."""

    name: str
    label: str
    loss: str
    reg: str
    head: str
    needs_margins: bool = False

    def describe(self, alpha: float, beta: float, label_smoothing: float) -> str:
        """Loss in words, e.g. ``BT + SFT (α=0.01, β=0.1)``."""
        reward = {"bt": "BT", "margin": "BT with margin", "label-smoothing": f"BT, label smoothing ε={label_smoothing:g}"}[self.loss]
        if self.reg == "none":
            return reward
        reg = {"sft": "SFT", "dpo-noref": "DPO without reference", "dpo": "DPO", "sft-nll": "SFT (NLL)"}[self.reg]
        return f"(1−α)·{reward} + α·{reg} (α={alpha:g}, β={beta:g})"


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("bt", "BT (baseline)", "bt", "none", "linear"),
        Method("bt-margin", "BT + margin", "margin", "none", "linear", needs_margins=True),
        Method("bt-label-smoothing", "BT + label smoothing", "label-smoothing", "none", "linear"),
        Method("grm-dpo-noref", "GRM w/ DPO-noref", "bt", "dpo-noref", "linear"),
        Method("grm-sft-linear", "GRM w/ SFT (linear head)", "bt", "sft", "linear"),
        Method("grm-sft-mlp", "GRM w/ SFT (MLP head)", "bt", "sft", "mlp"),
    )
}

BASELINE = "bt"
NO_MARGINS = "n/a: no margins in the data"


def parse_methods(names: list[str] | tuple[str, ...]) -> list[Method]:
    """Methods in the canonical table order; an unknown or repeated name is an error naming it."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"a method is listed twice in {', '.join(names)}")
    return [m for name, m in METHODS.items() if name in names]
