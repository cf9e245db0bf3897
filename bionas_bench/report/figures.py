"""The report's figures (matplotlib, Agg backend): each function draws one PNG from a table.

Every figure is drawn from the same DataFrame that is written next to it as CSV, so a
reader can check or redraw any figure. Figures carry a title, labelled axes with units,
and a legend; lambda axes are logarithmic.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 110
#: fixed colours per controller position, so a controller keeps its colour in every figure
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
#: the box plots' median line: black and wider than the box's edge, so that a median on the
#: box's edge (e.g. most runs at rank 1) still shows
MEDIAN_LINE = {"color": "black", "linewidth": 2.4, "solid_capstyle": "butt", "zorder": 4}
CHOICE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def colours(labels: list[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def _lam_axis(ax: plt.Axes, lambdas: list[float]) -> None:
    """A log λ axis ticked at the grid; with λ = 0 in it (loss only), symmetric-log: linear
    up to the smallest positive λ, so 0 gets a place of its own."""
    positive = [lam for lam in lambdas if lam > 0]
    if len(positive) < len(lambdas) and positive:
        ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
        scale = "symmetric log scale"
    elif positive:
        ax.set_xscale("log")
        scale = "log scale"
    else:
        scale = "linear"
    ax.set_xticks(lambdas)
    ax.set_xticklabels([f"{lam:g}" for lam in lambdas])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel(f"knowledge weight λ ({scale})")
    ax.grid(True, which="major", alpha=0.3)


def lambda_panels(
    table: pd.DataFrame,
    columns: list[tuple[str, str]],
    title: str,
    path: Path,
    labels: list[str],
    invert: bool = False,
) -> Path:
    """One panel per (column, y label): mean with 95% CI against lambda, a line per controller."""
    lambdas = sorted(table["lam"].unique())
    fig, axes = plt.subplots(
        1, len(columns), figsize=(4.6 * len(columns), 3.8), squeeze=False, layout="constrained"
    )
    colour = colours(labels)
    offsets = np.linspace(-0.06, 0.06, max(len(labels), 1))
    for ax, (column, ylabel) in zip(axes[0], columns, strict=True):
        for i, label in enumerate(labels):
            rows = table[table["controller"] == label].sort_values("lam")
            if rows.empty:
                continue
            x = rows["lam"].to_numpy() * 10 ** offsets[i]
            y = rows[column].to_numpy()
            err = np.vstack([y - rows[f"{column}_lo"].to_numpy(), rows[f"{column}_hi"].to_numpy() - y])
            ax.errorbar(
                x, y, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=3, label=label, color=colour[label]
            )
        _lam_axis(ax, lambdas)
        ax.set_ylabel(ylabel)
        if invert:
            ax.invert_yaxis()
        ax.set_title(ylabel.split("\n")[0].split(" (")[0])
    axes[0][0].legend(title="controller (mean, 95% CI)", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def _episode_axis(ax: plt.Axes) -> None:
    """An x axis of controller steps, ticked at whole episodes only (no step 12.5)."""
    ax.set_xlabel("controller step (episode)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def per_step_grid(table: pd.DataFrame, title: str, path: Path, labels: list[str]) -> Path:
    """Rows: loss, knowledge; columns: smallest and largest lambda; mean with 95% band. The
    panels of a row share their y axis, so the two lambdas compare at a glance."""
    lambdas = sorted(table["lam"].unique())
    fields = [
        ("loss", "validation loss (BCE, nats)"),
        ("knowledge", "knowledge dissimilarity K\n(KL, nats per motif position)"),
    ]
    fig, axes = plt.subplots(
        len(fields),
        len(lambdas),
        figsize=(5.2 * len(lambdas), 6.4),
        squeeze=False,
        layout="constrained",
        sharey="row",
    )
    colour = colours(labels)
    for r, (field, ylabel) in enumerate(fields):
        for c, lam in enumerate(lambdas):
            ax = axes[r][c]
            for label in labels:
                rows = table[
                    (table["controller"] == label) & (table["lam"] == lam) & (table["field"] == field)
                ]
                if rows.empty:
                    continue
                ax.plot(rows["episode"], rows["mean"], color=colour[label], label=label, lw=1.5)
                ax.fill_between(
                    rows["episode"], rows["lo"], rows["hi"], color=colour[label], alpha=0.25, lw=0
                )
            ax.set_title(f"{field} at λ = {lam:g}")
            _episode_axis(ax)
            if c == 0:
                ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(title="mean ± t SD/√n (95%)", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def policy_grid(table: pd.DataFrame, title: str, path: Path, layers: dict[str, list[str]]) -> Path:
    """Rows: lambdas; columns: layers; one line per choice (mean probability over runs, SMA)."""
    lambdas = sorted(table["lam"].unique())
    names = [layer for layer in layers if layer in set(table["layer"])]
    fig, axes = plt.subplots(
        len(lambdas),
        len(names),
        figsize=(3.9 * len(names), 2.7 * len(lambdas) + 0.9),
        squeeze=False,
        layout="constrained",
    )
    for r, lam in enumerate(lambdas):
        for c, layer in enumerate(names):
            ax = axes[r][c]
            for k, choice in enumerate(layers[layer]):
                rows = table[(table["lam"] == lam) & (table["layer"] == layer) & (table["choice"] == choice)]
                ax.plot(rows["episode"], rows["mean"], color=CHOICE_COLOURS[k % 8], label=choice, lw=1.4)
            ax.set_ylim(0, 1)
            ax.set_title(f"layer {c} ({layer}), λ = {lam:g}", fontsize=9)
            _episode_axis(ax)
            ax.set_ylabel("choice probability")
            ax.grid(True, alpha=0.3)
            if r == 0:
                ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    return _save(fig, path)


def rank_boxes(table: pd.DataFrame, column: str, title: str, path: Path, labels: list[str]) -> Path:
    """Distribution over runs of ``column`` per lambda, boxes side by side per controller."""
    lambdas = sorted(table["lam"].unique())
    colour = colours(labels)
    fig, ax = plt.subplots(
        figsize=(max(6.0, 1.3 * len(lambdas) * max(len(labels), 1) / 1.6), 4.2), layout="constrained"
    )
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        data = [table.loc[(table["controller"] == label) & (table["lam"] == lam), column] for lam in lambdas]
        pos = np.arange(len(lambdas)) + (i - (len(labels) - 1) / 2) * width
        box = ax.boxplot(
            data,
            positions=pos,
            widths=width * 0.9,
            patch_artist=True,
            showfliers=True,
            flierprops={"ms": 2},
            medianprops=MEDIAN_LINE,
        )
        for patch in box["boxes"]:
            patch.set_facecolor(colour[label])
            patch.set_edgecolor(colour[label])  # not black: the black median line stands out on an edge
            patch.set_alpha(0.55)
        ax.plot([], [], color=colour[label], lw=8, alpha=0.55, label=label)
    ax.set_xticks(np.arange(len(lambdas)))
    ax.set_xticklabels([f"{lam:g}" for lam in lambdas])
    ax.set_xlabel("knowledge weight λ")
    ax.set_ylabel(f"{column.replace('_', ' ')} of recommended arch (1 = best)")
    ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="controller")
    ax.set_title(title)
    return _save(fig, path)


def anytime_grid(table: pd.DataFrame, column: str, xlabel: str, ylabel: str, title: str, path: Path,
                 labels: list[str], log_x: bool = True) -> Path:  # fmt: skip
    """One panel per lambda: mean best-so-far ``column`` with 95% CI against the x axis."""
    lambdas = sorted(table["lam"].unique())
    cols = min(4, len(lambdas))
    rows_n = int(np.ceil(len(lambdas) / cols))
    fig, axes = plt.subplots(
        rows_n, cols, figsize=(3.8 * cols, 3.0 * rows_n + 0.6), squeeze=False, layout="constrained"
    )
    colour = colours(labels)
    for k, lam in enumerate(lambdas):
        ax = axes[k // cols][k % cols]
        for label in labels:
            rows = table[(table["controller"] == label) & (table["lam"] == lam)]
            if rows.empty:
                continue
            ax.plot(rows["x"], rows[column], color=colour[label], label=label, lw=1.5)
            ax.fill_between(
                rows["x"], rows[f"{column}_lo"], rows[f"{column}_hi"], color=colour[label], alpha=0.2
            )
        if log_x:
            ax.set_xscale("log")
        if column == "rank":
            ax.set_yscale("log")
        ax.set_title(f"λ = {lam:g}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    for k in range(len(lambdas), rows_n * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(title="controller (mean, 95% CI)", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def pareto(front: pd.DataFrame, picks: pd.DataFrame, hv: pd.DataFrame, title: str, path: Path,
           labels: list[str]) -> Path:  # fmt: skip
    """All architectures' median loss vs knowledge, the Pareto front, and each controller's picks."""
    colour = colours(labels)
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    fig, ax = plt.subplots(figsize=(7.2, 5.2), layout="constrained")
    ax.scatter(front["loss"], front["knowledge"], s=10, color="#bbbbbb", label="all architectures", zorder=1)
    on = front[front["on_front"]].sort_values("loss")
    ax.step(on["loss"], on["knowledge"], where="post", color="black", lw=1.2, label="Pareto front", zorder=2)
    ax.scatter(on["loss"], on["knowledge"], s=22, color="black", zorder=3)
    for i, label in enumerate(labels):
        mine = picks[picks["controller"] == label]
        if mine.empty:
            continue
        hv_row = hv[hv["controller"] == label]
        share = f"; HV {hv_row['fraction_mean'].iloc[0]:.0%} of the front's" if len(hv_row) else ""
        ax.scatter(
            mine["loss"],
            mine["knowledge"],
            s=12 + 140 * mine["share"],
            facecolors="none",
            edgecolors=colour[label],
            marker=markers[i % len(markers)],
            lw=1.3,
            label=f"{label} picks{share}",  # short, to fit two columns; sizes: the caption
            zorder=4,
        )
    ref = (hv["ref_loss"].iloc[0], hv["ref_knowledge"].iloc[0]) if len(hv) else None
    if ref is not None:
        ax.plot(
            *ref, marker="x", color="grey", ms=8, ls="none", label="HV reference (worst point of the space)"
        )
    ax.set_xlabel("median validation loss over replicates (BCE, nats)")
    ax.set_ylabel("median knowledge dissimilarity K (KL, nats per position)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    # below the axes, inside the figure (constrained layout makes room for it)
    fig.legend(fontsize=8, loc="outside lower center", ncol=2, frameon=False)
    return _save(fig, path)
