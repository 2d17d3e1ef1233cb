"""Diagnostic figures of an evaluation, saved as PNG (later logged to MLflow).

Figures are drawn on matplotlib's Agg canvas directly, never through pyplot, so
no global backend is switched and nothing needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from asdflow.errors import EvaluationError
from asdflow.evaluation.metrics import DOMAINS, MAX_FPR, scored_frame

_DOMAIN_STYLE = {"source": "-", "target": "--"}


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=100)
    return path


def plot_roc(
    ground_truth: pd.DataFrame,
    scores: Mapping[str, float],
    path: str | Path,
    max_fpr: float = MAX_FPR,
    title: str | None = None,
) -> Path:
    """ROC curves per machine type, section and domain, as the official AUCs see them.

    Each domain's curve is its normals against ALL anomalies of the section (the
    AUC in the legend); the pAUC region (FPR <= max_fpr) is shaded and each
    section's pAUC over all its clips is listed. Domains lacking a class are left
    out of the figure (evaluate_scores reports them as errors).
    """
    frame = scored_frame(ground_truth, scores)
    figure = Figure(figsize=(6.4, 5.6))
    ax = figure.add_subplot(1, 1, 1)
    ax.axvspan(0.0, max_fpr, color="tab:orange", alpha=0.15, label=f"pAUC region (FPR \u2264 {max_fpr:g})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
    drawn = 0
    groups = frame.groupby(["machine_type", "section"], sort=True)
    colours = iter(_colour_cycle(len(groups)))
    for (machine_type, section), group in groups:
        colour = next(colours)
        y, s, domain = group["y"].to_numpy(), group["score"].to_numpy(), group["domain"].to_numpy()
        for name in DOMAINS:
            keep = (domain == name) | (y == 1)
            if len(np.unique(y[keep])) < 2:
                continue
            fpr, tpr, _ = roc_curve(y[keep], s[keep])
            auc = roc_auc_score(y[keep], s[keep])
            ax.plot(fpr, tpr, color=colour, linestyle=_DOMAIN_STYLE[name],
                    label=f"{machine_type} {section} {name}: AUC {auc:.3f}")
            drawn += 1
        if len(np.unique(y)) == 2:
            pauc = roc_auc_score(y, s, max_fpr=max_fpr)
            ax.plot([], [], " ", label=f"{machine_type} {section} pAUC {pauc:.3f}")
    if drawn == 0:
        raise EvaluationError("no ROC curve to draw: no domain has both normal and anomalous clips")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (normals flagged)")
    ax.set_ylabel("true positive rate (anomalies flagged)")
    ax.set_title(title or "ROC per domain (normals of the domain vs all anomalies)")
    ax.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return _save(figure, path)


def plot_score_histogram(
    ground_truth: pd.DataFrame,
    scores: Mapping[str, float],
    path: str | Path,
    threshold: float | Mapping[str, float] | None = None,
    bins: int = 30,
    title: str | None = None,
) -> Path:
    """Histograms of normal and anomalous scores, one row per machine type and section,
    one column per domain, with the decision threshold drawn where given.

    `threshold` is one value, or machine type -> value (detectors are per machine type).
    """
    frame = scored_frame(ground_truth, scores)
    groups = list(frame.groupby(["machine_type", "section"], sort=True))
    figure = Figure(figsize=(9.0, 2.8 * len(groups) + 0.6))
    axes = figure.subplots(len(groups), len(DOMAINS), squeeze=False)
    for row, ((machine_type, section), group) in enumerate(groups):
        edges = np.histogram_bin_edges(group["score"].to_numpy(), bins=bins)
        line = threshold.get(machine_type) if isinstance(threshold, Mapping) else threshold
        for col, domain in enumerate(DOMAINS):
            ax = axes[row][col]
            mine = group[group["domain"] == domain]
            for label, colour, text in ((0, "tab:blue", "normal"), (1, "tab:red", "anomaly")):
                values = mine.loc[mine["y"] == label, "score"].to_numpy()
                ax.hist(values, bins=edges, alpha=0.55, color=colour, label=f"{text} ({len(values)})")
            if line is not None:
                ax.axvline(float(line), color="black", linestyle="--", linewidth=1.2,
                           label=f"threshold {float(line):.4g}")
            ax.set_title(f"{machine_type} section {section}, {domain} domain", fontsize="medium")
            ax.set_xlabel("anomaly score")
            ax.set_ylabel("clips")
            ax.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def _colour_cycle(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


__all__ = ["plot_roc", "plot_score_histogram"]


def plot_selection(selection: dict, path: str | Path, title: str = "") -> Path:
    """The label-free selection's proxy table as bars: each candidate's hmean of AUC and pAUC on held-out
    normals vs simulated anomalies, the chosen one marked (what `fit_info['selection']` holds)."""
    rows = selection.get("table") or []
    figure = Figure(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.0), layout="constrained")
    axes = figure.add_subplot()
    if rows:
        names = [r["candidate"] for r in rows]
        colours = ["tab:red" if n == selection.get("chosen") else "tab:blue" for n in names]
        axes.bar(range(len(rows)), [r["hmean"] for r in rows], color=colours)
        axes.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=8)
        low = min(r["hmean"] for r in rows)
        axes.set_ylim(max(0.0, low - 0.05), min(1.0, max(r["hmean"] for r in rows) + 0.02))
    else:
        axes.text(0.5, 0.5, selection.get("reason", "no proxy table"), ha="center", va="center", wrap=True)
    axes.set_ylabel("proxy hmean(AUC, pAUC)")
    axes.set_title(title or f"label-free selection: {selection.get('chosen')} (red)")
    return _save(figure, path)
