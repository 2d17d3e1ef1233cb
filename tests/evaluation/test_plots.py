"""The diagnostic figures are written as real, non-empty PNG images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from asdflow.errors import EvaluationError
from asdflow.evaluation.plots import plot_roc, plot_score_histogram

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def clips(machine_types=("fan",), sections=("00",), seed=0):
    rng = np.random.default_rng(seed)
    rows, scores = [], {}
    for machine_type in machine_types:
        for section in sections:
            for domain in ("source", "target"):
                for label, n, shift in (("normal", 20, 0.0), ("anomaly", 8, 1.5)):
                    for i in range(n):
                        name = f"section_{section}_{domain}_test_{label}_{i:04d}_{machine_type}.wav"
                        rows.append(dict(name=name, machine_type=machine_type, section=section,
                                         domain=domain, label=label))
                        scores[name] = float(rng.normal(shift, 1.0))
    return pd.DataFrame(rows), scores


def assert_png_with_content(path):
    assert path.exists() and path.stat().st_size > 2000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert float(pixels[..., :3].std()) > 0.01  # something is drawn, not a blank canvas


def test_roc_plot_is_written(tmp_path):
    truth, scores = clips(machine_types=("fan", "pump"), sections=("00", "01"))
    path = plot_roc(truth, scores, tmp_path / "figures" / "roc.png")
    assert path == tmp_path / "figures" / "roc.png"
    assert_png_with_content(path)


def test_histogram_is_written_with_a_threshold_per_machine_type(tmp_path):
    truth, scores = clips(machine_types=("fan", "pump"))
    single = plot_score_histogram(truth, scores, tmp_path / "hist.png", threshold=0.8)
    per_type = plot_score_histogram(truth, scores, tmp_path / "hist_per_type.png",
                                    threshold={"fan": 0.8, "pump": 1.1}, title="scores")
    none = plot_score_histogram(truth, scores, tmp_path / "hist_none.png")
    for path in (single, per_type, none):
        assert_png_with_content(path)
    # two rows (fan, pump) by two domains: taller than a one-row figure
    one_row = plot_score_histogram(*clips(), tmp_path / "one_row.png")
    assert imread(single).shape[0] > imread(one_row).shape[0]


def test_plots_refuse_scores_that_do_not_match_the_ground_truth(tmp_path):
    truth, scores = clips()
    scores.pop(next(iter(scores)))
    with pytest.raises(EvaluationError, match="have no scores"):
        plot_roc(truth, scores, tmp_path / "roc.png")
    with pytest.raises(EvaluationError, match="have no scores"):
        plot_score_histogram(truth, scores, tmp_path / "hist.png")
    assert not (tmp_path / "roc.png").exists()


def test_roc_plot_refuses_when_no_curve_can_be_drawn(tmp_path):
    truth, scores = clips()
    normals = truth[truth["label"] == "normal"]
    with pytest.raises(EvaluationError, match="no ROC curve"):
        plot_roc(normals, {n: scores[n] for n in normals["name"]}, tmp_path / "roc.png")
