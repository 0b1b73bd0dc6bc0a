"""matplotlib figures. Loss curves of one or more runs from their ``metrics.jsonl``: training and validation
loss against steps and against training time, runs overlaid, each run's best evaluation marked; bits/char
on a second axis for language models, validation accuracy in a second row for classifiers. Gate saturation of a traced text,
one scatter per layer (``trace.py``).

Needs matplotlib (the ``plot`` extra), imported only when a figure is drawn; it draws on a bare Agg canvas,
with no pyplot state and no display.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

from .. import checkpoint as ckpt

FORMATS = (".png", ".svg", ".pdf")
CURVES = "curves.png"                   # what ``rnnkit train`` leaves in the run directory


class PlotError(ValueError):
    """Runs that cannot be plotted (not runs, no evaluations yet, mixed tasks, an unknown file type)."""


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'rnnkit[plot]'") from None
    return Figure, FigureCanvasAgg


def _names(dirs: Sequence[Path]) -> list[str]:
    """Each run's directory name, with its parent's where two runs share a name."""
    names = [d.name or str(d) for d in dirs]
    return [f"{d.parent.name}/{d.name}" if names.count(n) > 1 else n for d, n in zip(dirs, names)]


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, *, names: Optional[Sequence[str]] = None,
              warn: Callable[[str], None] = lambda msg: None) -> Path:
    """Draw the runs' curves into ``out`` (.png, .svg or .pdf), replacing it whole (never a torn file).

    A run still training is drawn up to its last evaluation; a run with none yet is left out with a
    warning (an error when no run has any)."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise PlotError(f"{out}: give a file ending in {', '.join(FORMATS)}")
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise PlotError("give at least one run directory")
    runs, empty = [], []
    for d, name in zip(dirs, names or _names(dirs)):
        task = ckpt.read_run(d).get("task")
        records = [r for r in ckpt.read_metrics(d) if isinstance(r.get("step"), int) and r.get("val_loss") is not None]
        if records:
            runs.append((name, task, records))
        else:
            empty.append(str(d))
    if not runs:
        raise PlotError(f"nothing to plot yet: {', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no "
                        f"evaluation in metrics.jsonl (the first comes after --eval-every of training)")
    for d in empty:
        warn(f"{d} has no evaluation yet (the first comes after --eval-every of training); left out")
    tasks = {t for _, t, _ in runs}
    if len(tasks) > 1:
        raise PlotError("plot language models and classifiers separately: their losses are not comparable")
    Figure, Canvas = _matplotlib()
    classifier = tasks == {"classifier"}
    fig = Figure(figsize=(11, 7.5 if classifier else 4.6), dpi=110, layout="constrained")
    Canvas(fig)
    axes = fig.subplots(2 if classifier else 1, 2, squeeze=False, sharey="row")
    span = max(r[-1].get("elapsed_s") or 0 for _, _, r in runs)
    minutes = span > 300
    palette = [f"C{i}" for i in range(10)]
    losses = []
    for i, (name, _, records) in enumerate(runs):
        color = palette[i % len(palette)]
        steps = [r["step"] for r in records]
        times = [(r.get("elapsed_s") or 0) / (60 if minutes else 1) for r in records]
        val = [r["val_loss"] for r in records]
        train = [r.get("train_loss") for r in records]
        losses += [v for v in val + train if isinstance(v, (int, float)) and v > 0]
        key = "val_error" if classifier and all("val_error" in r for r in records) else "val_loss"
        b = min(range(len(records)), key=lambda j: records[j][key])
        for ax, xs in zip(axes[0], (steps, times)):
            marker = "o" if len(records) < 30 else None
            ax.plot(xs, val, color=color, marker=marker, ms=3, label=f"{name} validation")
            pts = [(x, t) for x, t in zip(xs, train) if isinstance(t, (int, float))]
            if pts:
                ax.plot(*zip(*pts), color=color, ls="--", lw=1, alpha=0.7, label=f"{name} training")
            ax.plot([xs[b]], [val[b]], marker="*", ms=12, color=color, mec="black", mew=0.6, ls="none")
            ax.annotate(f"{val[b]:.3f}", (xs[b], val[b]), textcoords="offset points", xytext=(6, -12), fontsize=8)
        if classifier:
            acc = [r.get("val_accuracy") for r in records]
            for ax, xs in zip(axes[1], (steps, times)):
                ax.plot(xs, acc, color=color, marker="o" if len(records) < 30 else None, ms=3, label=name)
                ax.plot([xs[b]], [acc[b]], marker="*", ms=12, color=color, mec="black", mew=0.6, ls="none")
                ax.annotate(f"{acc[b]:.4f}", (xs[b], acc[b]), textcoords="offset points", xytext=(6, -12), fontsize=8)
    if losses and max(losses) / min(losses) > 2:
        from matplotlib.ticker import FuncFormatter
        plain = FuncFormatter(lambda v, _: f"{v:g}")        # 0.3, not 3×10⁻¹
        for ax in axes[0]:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
    unit = "nats" if not classifier else "cross-entropy"
    axes[0][0].set_ylabel(f"loss ({unit}{'/char' if not classifier else ''})")
    for ax, xlabel in zip(axes[-1], ("step", f"training time ({'min' if minutes else 's'})")):
        ax.set_xlabel(xlabel)
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.25)
    if not classifier:
        ln2 = math.log(2)
        sec = axes[0][1].secondary_yaxis("right", functions=(lambda x: x / ln2, lambda x: x * ln2))
        sec.set_ylabel("bits/char")
    else:
        axes[1][0].set_ylabel("validation accuracy")
    axes[0][0].legend(fontsize=8, loc="upper right")
    axes[0][0].set_title("against steps", fontsize=10)
    axes[0][1].set_title("against training time (evaluation not counted)", fontsize=10)
    fig.suptitle(", ".join(n for n, _, _ in runs) + "  (★ best evaluation)", fontsize=11)
    _save(fig, out)
    return out


def _save(fig, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix[1:].lower()))


def plot_after_training(run_dir: str | Path, warn: Callable[[str], None]) -> Optional[Path]:
    """``curves.png`` in the run directory, when matplotlib is installed; a failure only warns."""
    try:
        _matplotlib()
    except PlotError:
        return None                     # the plot extra is not installed: nothing to do
    try:
        return plot_runs([run_dir], Path(run_dir) / CURVES)
    except Exception as e:              # a picture must never fail a training run
        warn(f"could not draw {Path(run_dir) / CURVES}: {e}")
        return None


def plot_saturation(saturation: dict, out: str | Path, *, title: str = "", low: float = 0.1,
                    high: float = 0.9) -> Path:
    """One scatter per layer: each unit's gate as (fraction of steps above ``high``, fraction below ``low``),
    as in Karpathy, Johnson and Fei-Fei (2015), figure 3."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise PlotError(f"{out}: give a file ending in {', '.join(FORMATS)}")
    Figure, Canvas = _matplotlib()
    layers = sorted(saturation)
    fig = Figure(figsize=(3.6 * len(layers) + 0.4, 3.9), dpi=110, layout="constrained")
    Canvas(fig)
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    colors = {"i": "C0", "f": "C2", "o": "C3", "r": "C4", "z": "C1"}
    for ax, k in zip(axes, layers):
        for g, (left, right) in saturation[k].items():
            ax.scatter(right.tolist(), left.tolist(), s=9, alpha=0.55, color=colors.get(g), label=f"{g} gate")
        ax.plot([0, 1], [1, 0], color="0.8", lw=1)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal", title=f"layer {k}",
               xlabel=f"fraction right-saturated (> {high:g})")
        ax.grid(True, alpha=0.25)
    axes[0].set_ylabel(f"fraction left-saturated (< {low:g})")
    axes[0].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, out)
    return out
