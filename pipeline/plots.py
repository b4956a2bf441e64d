"""Plots of a run, written to ``RUN_DIR/plots/`` (matplotlib, no screen needed).

- ``front.png``: the front after each iteration, top-1 against each cost objective;
- ``hypervolume.png``: hypervolume against evaluations;
- ``training_phases.png``: the supernet's phase table and validation accuracy per epoch;
- ``generated.png``: generated architectures against their budgets;
- ``precision.png``: the fine-tuned subnets at fp32 and INT8, top-1 against latency (int8 profiles only).

``plot_run`` draws whichever of these the run directory has data for and returns their paths.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline import results  # noqa: E402
from pipeline.atomic import atomic_path  # noqa: E402
from pipeline.errors import ResultsError  # noqa: E402
from pipeline.run_dir import RunDir

_log = logging.getLogger(__name__)


def _save(figure: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(figure)
    return path


def plot_fronts(run_dir: str | Path) -> Path:
    """Top-1 against each cost objective, one colour per iteration's front, over the archive."""
    run_dir = Path(run_dir)
    objectives = results.objectives_of(run_dir)
    costs = [o.name for o in objectives if o.name != "top1"]
    archive = results.archive(run_dir)
    archive = archive[archive["status"] == "ok"]
    stacked = results.fronts(run_dir)
    iterations = sorted(stacked["front_iteration"].unique())
    cmap = plt.get_cmap("viridis")
    figure, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 4), squeeze=False)
    for axis, cost in zip(axes[0], costs):
        axis.scatter(archive[cost], archive["top1"], s=8, c="lightgrey", label="evaluated")
        for index, iteration in enumerate(iterations):
            front = stacked[stacked["front_iteration"] == iteration].sort_values(cost)
            colour = cmap(index / max(1, len(iterations) - 1))
            last = index == len(iterations) - 1
            axis.step(front[cost], front["top1"], where="post", color=colour, lw=2.2 if last else 0.9,
                      label=f"iter {iteration}" if last or index == 0 else None)
            if last:
                axis.scatter(front[cost], front["top1"], color=colour, s=22, zorder=3)
        axis.set_xlabel(cost)
        axis.set_ylabel("top-1 (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"Pareto front per iteration ({run_dir.name})")
    return _save(figure, RunDir(run_dir).plot("front.png"))


def plot_hypervolume(run_dir: str | Path) -> Path:
    """Normalised hypervolume of the archive against evaluations used."""
    run_dir = Path(run_dir)
    curve = results.hypervolume_curve(run_dir)
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot(curve["evaluations"], curve["hypervolume"], marker="o")
    axis.set_xlabel("true evaluations")
    axis.set_ylabel("normalised hypervolume")
    axis.grid(alpha=0.3)
    axis.set_title("Search progress")
    return _save(figure, RunDir(run_dir).plot("hypervolume.png"))


def plot_training_phases(run_dir: str | Path) -> Path:
    """The training phase table (epochs, learning rate, final accuracies) and accuracy per epoch."""
    run_dir = Path(run_dir)
    metrics = results.train_metrics(run_dir)
    metrics = metrics.reset_index(drop=True)
    metrics["step"] = range(1, len(metrics) + 1)
    accuracy_columns = [c for c in metrics.columns if c.startswith(("val_top1", "top1_")) and c != "top1_best"]
    figure, (table_axis, curve_axis) = plt.subplots(
        2, 1, figsize=(8, 6.5), gridspec_kw={"height_ratios": [1, 1.4]}
    )
    group_keys = [c for c in ("phase", "part") if c in metrics.columns]
    summary = metrics.groupby(group_keys, sort=False).agg(
        epochs=("step", "size"), **({"lr": ("lr", "max")} if "lr" in metrics else {}),
        **{c: (c, "last") for c in accuracy_columns},
    ).reset_index()
    table_axis.axis("off")
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in summary.to_numpy()]
    table = table_axis.table(cellText=cells, colLabels=list(summary.columns), loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for column in accuracy_columns:
        curve_axis.plot(metrics["step"], metrics[column], label=column)
    if "phase" in metrics:
        starts = metrics.groupby("phase", sort=False)["step"].min()
        for phase, start in starts.items():
            curve_axis.axvline(start - 0.5, color="grey", lw=0.6, ls="--")
            curve_axis.text(start - 0.4, curve_axis.get_ylim()[1], str(phase), fontsize=7, va="top")
    curve_axis.set_xlabel("epoch (all phases)")
    curve_axis.set_ylabel("validation top-1 (%)")
    curve_axis.legend(fontsize=7)
    curve_axis.grid(alpha=0.3)
    figure.suptitle("Supernet training phases")
    return _save(figure, RunDir(run_dir).plot("training_phases.png"))


def plot_generated(run_dir: str | Path) -> Path:
    """Generated architectures: cost and accuracy against the requested budget."""
    run_dir = Path(run_dir)
    frame = results.generated(run_dir).sort_values("budget")
    metric = str(frame["budget_metric"].iloc[0]).split(",")[0] if "budget_metric" in frame else "params_m"
    figure, (cost_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.8))
    met = frame["meets_budget"].astype(bool)
    if metric in frame:
        cost_axis.scatter(frame["budget"][met], frame[metric][met], label="meets budget")
        cost_axis.scatter(frame["budget"][~met], frame[metric][~met], marker="x", color="red", label="misses budget")
    limit = [frame["budget"].min(), frame["budget"].max()]
    cost_axis.plot(limit, limit, color="grey", ls="--", lw=0.8, label="budget")
    cost_axis.set_xlabel(f"budget ({metric})")
    cost_axis.set_ylabel(f"generated {metric}")
    cost_axis.legend(fontsize=8)
    measured = "top1" in frame and frame["top1"].notna().any() and "predicted_top1" in frame
    if measured:  # the generator's prediction against the true measurement of its answer
        accuracy_axis.scatter(frame["predicted_top1"], frame["top1"], c=["C0" if m else "red" for m in met])
        both = frame[["predicted_top1", "top1"]]
        ends = [float(both.min().min()), float(both.max().max())]
        accuracy_axis.plot(ends, ends, color="grey", ls="--", lw=0.8, label="measured = predicted")
        accuracy_axis.set_xlabel("predicted top-1 (%)")
        accuracy_axis.set_ylabel("measured top-1 (%)")
    else:
        accuracy_axis.plot(frame["budget"], frame["predicted_top1"], marker="o", label="predicted_top1")
        accuracy_axis.set_xlabel(f"budget ({metric})")
        accuracy_axis.set_ylabel("predicted top-1 (%)")
    accuracy_axis.legend(fontsize=8)
    for axis in (cost_axis, accuracy_axis):
        axis.grid(alpha=0.3)
    figure.suptitle("Generated architectures per budget")
    return _save(figure, RunDir(run_dir).plot("generated.png"))


def plot_precision(run_dir: str | Path) -> Path:
    """Fine-tuned subnets at fp32 and INT8: test top-1 against latency, one panel per int8 profile."""
    run_dir = Path(run_dir)
    table = results.precision_comparison(run_dir)
    if table.empty:
        raise ResultsError(f"{run_dir}: no int8 profile in finetuned.parquet")
    profiles = list(dict.fromkeys(table["profile"]))
    figure, axes = plt.subplots(1, len(profiles), figsize=(4.6 * len(profiles), 3.8), squeeze=False)
    for axis, profile in zip(axes[0], profiles, strict=True):
        rows = table[table["profile"] == profile]
        axis.scatter(rows["fp32_ms"], rows["fp32_top1"], label="fp32")
        axis.scatter(rows["int8_ms"], rows["int8_top1"], marker="s", label="INT8")
        for _, row in rows.iterrows():  # each subnet's move from fp32 to INT8
            axis.annotate("", xy=(row["int8_ms"], row["int8_top1"]), xytext=(row["fp32_ms"], row["fp32_top1"]),
                          arrowprops={"arrowstyle": "->", "color": "grey", "lw": 0.8})
        axis.set_xlabel(f"latency (ms) on {profile}")
        axis.set_ylabel("test top-1 (%), ONNX Runtime")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Fine-tuned subnets: fp32 against INT8")
    return _save(figure, RunDir(run_dir).plot("precision.png"))


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw every plot the run directory has data for; return the written paths."""
    written = []
    for plot in (plot_fronts, plot_hypervolume, plot_training_phases, plot_generated, plot_precision):
        try:
            written.append(plot(run_dir))
        except (ResultsError, KeyError) as exc:
            _log.info(f"plots: skipped {plot.__name__}: {exc}")
    return written


__all__ = ["plot_fronts", "plot_generated", "plot_hypervolume", "plot_precision", "plot_run", "plot_training_phases"]
