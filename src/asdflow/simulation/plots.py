"""Side-by-side spectrograms of normal vs simulated patches (+ the mask), as PNG.

Drawn on matplotlib's Agg canvas directly (as asdflow.evaluation.plots), never through
pyplot: no global backend, no display needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_simulated(normal: np.ndarray, simulated: np.ndarray, mask: np.ndarray, path: str | Path,
                   title: str | None = None) -> Path:
    """One row: normal (dB), simulated (dB, same colour scale), their difference, the mask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(12, 3.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 4, sharey=True)
    vmin, vmax = float(min(normal.min(), simulated.min())), float(max(normal.max(), simulated.max()))
    diff = simulated - normal
    limit = float(np.abs(diff).max()) or 1.0
    panels = [
        (normal, "normal (dB)", "magma", vmin, vmax),
        (simulated, "simulated (dB)", "magma", vmin, vmax),
        (diff, "simulated - normal (dB)", "coolwarm", -limit, limit),
        (mask.astype(float), f"mask ({mask.mean():.0%} of cells)", "gray", 0.0, 1.0),
    ]
    for ax, (image, label, cmap, lo, hi) in zip(axes, panels):
        shown = ax.imshow(image, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(label, fontsize="small")
        ax.set_xlabel("frame")
        figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    axes[0].set_ylabel("mel bin")
    if title:
        figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=90)
    return path


def plot_simulation_folder(out_dir: str | Path, limit: int | None = 8) -> list[Path]:
    """plots/NNNN.png for the first `limit` samples of a folder simulate_anomalies wrote."""
    from asdflow.simulation.simulate import load_simulation

    out_dir = Path(out_dir)
    meta, normal, simulated, masks = load_simulation(out_dir)
    paths = []
    for k, sample in enumerate(meta["samples"][: limit or None]):
        title = (f"{meta['machine_type']} · {meta['method']} · {sample['clip']} @ frame {sample['start_frame']} · "
                 f"{sample['mask_kind']} mask")
        paths.append(plot_simulated(normal[k], simulated[k], masks[k], out_dir / "plots" / f"{sample['id']}.png", title))
    return paths
