import numpy as np
import pytest

from asdflow.detectors import selection
from asdflow.detectors.family_configs import SelectionConfig


def test_folds_cover_every_clip_once_and_spread_each_domain():
    domains = ["source"] * 27 + ["target"] * 5
    folds = selection.fold_splits(domains, 4, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(32))
    for fold in folds:
        targets = sum(domains[i] == "target" for i in fold)
        assert 1 <= targets <= 2  # 5 target clips over 4 folds
    assert [f.tolist() for f in folds] == [f.tolist() for f in selection.fold_splits(domains, 4, seed=0)]


def test_proxy_table_ranks_an_informative_candidate_first():
    rng = np.random.default_rng(0)
    n = 20
    normals = [rng.normal(size=2000).astype(np.float32) for _ in range(n)]
    config = SelectionConfig(anomaly_kinds=["tilt"], n_folds=4)
    proxy = selection.build_proxy_set(["source"] * n, normals.__getitem__, 16000, config, seed=0)
    assert proxy.n_normals == n and sorted(set(proxy.owners.tolist())) == list(range(n))
    energy = np.array([np.std(np.diff(x)) for x in normals + proxy.anomalies])  # sees a spectral tilt

    def fold_scorer(train, heldout, anomaly_idx):
        base = energy[train].mean()
        informative = np.abs(energy - base)
        noise = rng.normal(size=len(energy))
        return {name: (values[heldout], values[n + anomaly_idx]) for name, values in
                (("informative", informative), ("noise", noise))}

    table = selection.proxy_table(proxy, fold_scorer, config)
    by_name = {row["candidate"]: row for row in table}
    assert by_name["informative"]["hmean"] > 0.9 > by_name["noise"]["hmean"]
    assert set(by_name["informative"]["auc_by_kind"]) == {"tilt"}
    assert selection.choose(table, "noise", 0.01)[0] == "informative"


def test_used_folds_and_the_anomaly_cap_bound_the_simulation():
    normals = [np.random.default_rng(i).normal(size=2000).astype(np.float32) for i in range(40)]
    loaded = []

    def load(i):
        loaded.append(i)
        return normals[i]

    config = SelectionConfig(anomaly_kinds=["tilt", "impacts"], n_folds=4, folds_used=1, max_anomalous_clips=6)
    proxy = selection.build_proxy_set(["source"] * 40, load, 16000, config, seed=0)
    assert len(proxy.folds) == 1 and len(proxy.anomalies) == 12
    assert set(proxy.owners.tolist()) <= set(proxy.folds[0].tolist()) and len(set(loaded)) == 6


def test_ties_go_to_the_default_and_saturation_is_flagged():
    table = [{"candidate": "a", "hmean": 1.0}, {"candidate": "b", "hmean": 0.995}, {"candidate": "c", "hmean": 0.7}]
    assert selection.choose(table, "b", 0.01)[0] == "b"
    assert selection.choose(table, "c", 0.01)[0] == "a"
    assert selection.saturated(table)
    assert not selection.saturated(table[1:])


def test_heldout_scores_and_fusion():
    values = np.arange(10, dtype=float)

    def scorer(train, heldout):
        return {"x": values[heldout] - values[train].mean(), "y": 2 * values[heldout]}

    loo = selection.heldout_scores(10, ["source"] * 10, scorer, None, seed=0)
    assert np.all(np.isfinite(loo["x"])) and len(loo["x"]) == 10
    stats = selection.normalisation_stats(loo)
    fused = selection.fuse(loo, stats, "mean")
    assert fused.mean() == pytest.approx(0.0, abs=1e-9)
    assert np.all(selection.fuse(loo, stats, "min") <= fused + 1e-12)
    with pytest.raises(ValueError):
        selection.fuse(loo, stats, "median")


def test_format_table_marks_the_choice():
    result = {"strategy": "proxy", "chosen": "b", "reason": "best", "saturated": False,
              "table": [{"candidate": "a", "auc": 0.6, "pauc": 0.5, "hmean": 0.55},
                        {"candidate": "b", "auc": 0.9, "pauc": 0.8, "hmean": 0.85}]}
    lines = selection.format_table(result)
    assert lines[0].startswith("selection: proxy -> b")
    assert lines[2].split()[0] == "b" and lines[2].endswith("<")
