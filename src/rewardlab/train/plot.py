"""`loss.png`: a training run's curves, from the history it records in ``metrics.json``.

Left: the loss parts against the optimizer step (total, reward loss, and the regularizer on its own
axis when there is one). Right: batch accuracy during training, and evaluation accuracy with its 95%
Wilson interval where the run was evaluated. Stamped, like rewardlab's other plots, with how it was
made (the run's options, versions, hardware, wall time) and written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardlab.files import finish_figure

LOSS_PLOT = "loss.png"


def plot_training_curves(
    history: Sequence[dict[str, Any]],
    eval_history: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    footer: str,
    title: str = "training curves",
) -> Path:
    """Write the loss-parts and accuracy curves PNG to ``path`` (atomically); returns ``path``.

    ``history`` entries hold ``step``, ``loss``, ``reward_loss``, ``reg_loss`` and ``train_accuracy``;
    ``eval_history`` entries ``step``, ``accuracy`` and ``n`` (the final evaluation included).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from rewardlab.evaluate.stats import wilson_interval

    steps = [h["step"] for h in history]
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.4))
    loss_ax.plot(steps, [h["loss"] for h in history], "o-", markersize=3, label="total loss")
    loss_ax.plot(steps, [h["reward_loss"] for h in history], "s--", markersize=3, label="reward loss")
    lines, labels = loss_ax.get_legend_handles_labels()
    if any(h.get("reg_loss") for h in history):
        reg_ax = loss_ax.twinx()
        reg_ax.plot(steps, [h["reg_loss"] for h in history], "^:", color="tab:green", markersize=3,
                    label="regularizer (right axis)")
        reg_ax.set_ylabel("regularizer")
        more_lines, more_labels = reg_ax.get_legend_handles_labels()
        lines, labels = lines + more_lines, labels + more_labels
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel("loss (mean over the logging window)")
    loss_ax.legend(lines, labels, fontsize=8, loc="best")
    loss_ax.set_title("loss parts")

    acc_ax.plot(steps, [h["train_accuracy"] for h in history], "o-", markersize=3, label="train batch accuracy")
    scored = [e for e in eval_history if e.get("n")]
    if scored:
        intervals = [wilson_interval(round(e["accuracy"] * e["n"]), e["n"]) for e in scored]
        values = [e["accuracy"] for e in scored]
        acc_ax.errorbar([e["step"] for e in scored], values, capsize=3, fmt="D", color="tab:red",
                        yerr=[[v - low for v, (low, _) in zip(values, intervals)],
                              [high - v for v, (_, high) in zip(values, intervals)]],
                        label=f"eval accuracy, 95% interval (n={scored[-1]['n']})")
    acc_ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    acc_ax.set_ylim(0, 1.02)
    acc_ax.set_xlabel("optimizer step")
    acc_ax.set_ylabel("pairwise accuracy")
    acc_ax.legend(fontsize=8, loc="lower right")
    acc_ax.set_title("accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(title)
    return finish_figure(figure, Path(path), footer=footer)
