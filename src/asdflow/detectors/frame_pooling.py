"""The time pooling of the frame-based families, chosen by the same label-free selection as TWFR.

baseline_ae (frame reconstruction errors), conditional_ae (per-bin errors), discriminator
(patch scores) and auddsr (anomaly-map columns) each produce a score per frame; the clip
score is their GWRP with r (`asdflow.detectors.pooling`). A family implements
`candidate_scores(waveforms, records, rs)`: the clip scores under every r at once, from one
pass of its network.

With `time_pooling.r: auto`, `resolve_time_pooling` fits a copy of the detector (r fixed at
the default, so the copy does not select again) on all training clips but one fold, scores
the held-out normals and anomalies simulated from them under every r, and picks r by the
proxy table; the caller then fits on every clip with that r. Cost: one extra fit on
(K-1)/K of the clips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from asdflow.data.audio import load_audio
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.detectors import selection
from asdflow.detectors.pooling import describe_r
from asdflow.errors import DetectorError

if TYPE_CHECKING:
    from asdflow.detectors.base import Detector


def r_name(r: float) -> str:
    return f"r={float(r):g}"


def fixed_choice(r: float, reason: str, strategy: str = "fixed") -> tuple[float, dict[str, Any]]:
    return float(r), {"strategy": strategy, "chosen": r_name(r), "pooling": describe_r(r), "reason": reason,
                      "table": [], "saturated": False}


def resolve_time_pooling(detector: "Detector", records: list[ClipRecord], root: str) -> tuple[float, dict[str, Any]]:
    """(r, selection record for fit_info) for a frame-based detector about to fit on `records`."""
    from asdflow.detectors.base import make_detector

    pooling = detector.params.time_pooling
    if pooling.r != "auto":
        return fixed_choice(float(pooling.r), "time_pooling.r is set in the config")
    s = pooling.selection
    if s.strategy == "fixed":
        return fixed_choice(pooling.default_r, "the fixed default (selection.strategy: fixed)")
    if s.strategy != "proxy":
        raise DetectorError(f"{detector.family}: time_pooling.selection.strategy {s.strategy!r} is for twfr; "
                            "a frame-based family chooses r by 'proxy' or takes the 'fixed' default")
    if len(records) < s.min_clips:
        return fixed_choice(pooling.default_r, f"{len(records)} training clips, fewer than selection.min_clips="
                                               f"{s.min_clips}: the fixed default", "proxy")
    sample_rate = detector.features.sample_rate
    config = detector.config.model_copy(deep=True)
    getattr(config, detector.family).time_pooling.r = pooling.default_r  # the copy must not select again
    domains = [r.domain or "source" for r in records]

    def load(i: int) -> np.ndarray:
        return load_audio(records[i].path, sample_rate)

    proxy = selection.build_proxy_set(domains, load, sample_rate, s, s.seed + detector.seed)

    def fold_scorer(train, heldout, anomaly_idx):
        copy = make_detector(config, detector.features, seed=detector.seed)
        copy.fit(Manifest(root=root, records=[records[i] for i in train]), progress=False)
        normal = copy.candidate_scores([load(i) for i in heldout], [records[i] for i in heldout], pooling.r_grid)
        anomaly = copy.candidate_scores(
            [proxy.anomalies[j] for j in anomaly_idx], [records[proxy.owners[j]] for j in anomaly_idx], pooling.r_grid
        )
        return {r_name(r): (normal[r], anomaly[r]) for r in pooling.r_grid}

    table = selection.proxy_table(proxy, fold_scorer, s)
    chosen, reason = selection.choose(table, r_name(pooling.default_r), s.tie_tolerance)
    r = float(chosen.split("=", 1)[1])
    return r, {"strategy": "proxy", "chosen": chosen, "pooling": describe_r(r), "reason": reason, "table": table,
               "saturated": selection.saturated(table)}
