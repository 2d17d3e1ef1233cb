"""TWFR as a Detector: GWRP-pooled log-mel per clip, scored by a GMM or a density-normalised k-NN.

Fitting, on one machine type's normal training clips (every section and domain):
1. the DCASE log-mel of each clip (`asdflow.features`), pooled over time per mel bin
   with GWRP for every r of the grid (one sort per clip serves them all);
2. the candidates (every r with every scorer) go to the label-free selection
   (`asdflow.detectors.selection`): `proxy` picks one by held-out normals against
   anomalies simulated from them, `fusion_*` keeps all of them and fuses their
   normalised scores, `fixed` takes the default; fewer clips than `min_clips`
   fall back to the fixed default and say so;
3. the chosen candidate(s) are fitted on every clip; the threshold is a gamma
   quantile of the training clips' held-out scores (a k-NN scores its own bank
   entries 0, so in-sample scores would put the threshold far too low).

No torch training, no seed variance beyond the selection's folds and simulated
anomalies; a fit takes seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from asdflow.data.audio import load_audio
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.detectors import selection
from asdflow.detectors.base import Detector, training_records
from asdflow.detectors.pooling import describe_r, gwrp_many
from asdflow.detectors.threshold import gamma_threshold
from asdflow.detectors.twfr.scorers import DensityKNN, GMMScorer
from asdflow.errors import AsdflowError, DetectorError
from asdflow.progress import progress_bar

LOAD_CHUNK = 32
SILENCE_RMS = 1e-7  # below this a clip carries no sound to describe
STATE_FILE = "twfr.npz"
CANDIDATES_FILE = "twfr.json"


def candidate_name(scorer: str, r: float) -> str:
    return f"{scorer} r={r:g}"


def parse_candidate(name: str) -> tuple[str, float]:
    scorer, r = name.split(" r=")
    return scorer, float(r)


class TWFRDetector(Detector):
    family = "twfr"

    def __init__(self, config, features, seed: int = 0):
        super().__init__(config, features, seed)
        self.params = config.twfr
        self.scorers: dict[str, GMMScorer | DensityKNN] = {}  # candidate name -> fitted scorer
        self.fusion: str | None = None  # "mean"/"min" when every candidate is kept and fused
        self.fused_stats: dict[str, tuple[float, float]] = {}

    def n_parameters(self) -> int:
        return int(sum(v.size for s in self.scorers.values() for v in s.state().values()))

    def _new_scorer(self, kind: str) -> GMMScorer | DensityKNN:
        p = self.params
        if kind == "gmm":
            return GMMScorer(p.gmm_components, p.gmm_reg_covar, seed=self.seed)
        return DensityKNN(p.knn_k_density, p.knn_metric)

    @property
    def rs(self) -> list[float]:
        """The grid's r values and the default's (the fixed fallback is always a candidate)."""
        return sorted(set(self.params.r_grid) | {self.params.default_r})

    @property
    def candidates(self) -> list[str]:
        scorers = list(dict.fromkeys([*self.params.scorers, self.params.default_scorer]))
        return [candidate_name(s, r) for r in self.rs for s in scorers]

    @property
    def default_candidate(self) -> str:
        return candidate_name(self.params.default_scorer, self.params.default_r)

    # -- features -----------------------------------------------------------
    def _pooled(self, waveforms: list[np.ndarray], rs: list[float]) -> list[dict[float, np.ndarray]]:
        return [gwrp_many(m, rs) for m in self.extractor.batch(waveforms)]

    def _load(self, record: ClipRecord) -> np.ndarray:
        try:
            wave = load_audio(record.path, self.features.sample_rate)
        except AsdflowError as err:  # NaN samples, unreadable: the clip is named in the message
            raise DetectorError(f"twfr: {err}") from None
        if np.sqrt(np.mean(np.square(wave, dtype=np.float64))) < SILENCE_RMS:
            raise DetectorError(f"twfr: {record.path}: the clip is silent (RMS below {SILENCE_RMS:g})")
        return wave

    def _pooled_records(self, records: list[ClipRecord], progress: bool) -> dict[float, np.ndarray]:
        """r -> (n_clips, n_mels) pooled log-mels, read in chunks (a thousand waveforms never sit in memory)."""
        pooled: list[dict[float, np.ndarray]] = []
        for start in progress_bar(range(0, len(records), LOAD_CHUNK), desc="features", enabled=progress):
            pooled.extend(self._pooled([self._load(r) for r in records[start : start + LOAD_CHUNK]], self.rs))
        return {r: np.stack([p[r] for p in pooled]) for r in self.rs}

    # -- training -----------------------------------------------------------
    def fit(self, manifest: Manifest, progress: bool = True) -> dict[str, Any]:
        started = time.perf_counter()
        records = training_records(manifest)
        self.machine_type = records[0].machine_type
        if len(records) < self.params.min_train_clips:
            raise DetectorError(
                f"{self.machine_type}: twfr needs at least {self.params.min_train_clips} normal training clips, "
                f"got {len(records)}"
            )
        domains = [r.domain or "source" for r in records]
        matrix = self._pooled_records(records, progress)
        result = self._select(records, domains, matrix)
        self.scorers = {}
        self.fusion = result.chosen.split("_", 1)[1] if result.chosen.startswith("fusion_") else None
        kept = self.candidates if self.fusion else [result.chosen]
        for name in kept:
            kind, r = parse_candidate(name)
            self.scorers[name] = self._new_scorer(kind).fit(matrix[r])
        self.fused_stats = result.fused_stats
        self.threshold = gamma_threshold(self._heldout_training_scores(domains, matrix, result), self.config.threshold_quantile)
        self.fit_info = {
            "machine_type": self.machine_type,
            "n_clips": len(records),
            "domains": {d: domains.count(d) for d in ("source", "target")},
            "sections": sorted({r.section for r in records}),
            "selection": result.as_dict(),
            "pooling": self.pooling_summary(),
            "threshold": self.threshold,
            "seconds": time.perf_counter() - started,
        }
        return self.fit_info

    def _select(self, records, domains, matrix) -> selection.SelectionResult:
        s = self.params.selection
        strategy = s.strategy
        if strategy == "fixed":
            return selection.SelectionResult("fixed", self.default_candidate, "the fixed default (selection.strategy: fixed)")
        if len(records) < s.min_clips:
            return selection.SelectionResult(
                strategy, self.default_candidate,
                f"{len(records)} training clips, fewer than selection.min_clips={s.min_clips}: the fixed default",
            )

        def fit_score(train: np.ndarray, evaluate: dict[float, np.ndarray]) -> dict[str, np.ndarray]:
            out = {}
            for name in self.candidates:
                kind, r = parse_candidate(name)
                out[name] = self._new_scorer(kind).fit(matrix[r][train]).score(evaluate[r])
            return out

        if strategy.startswith("fusion_"):
            scores = selection.heldout_scores(
                len(records), domains, lambda tr, ho: fit_score(tr, {r: m[ho] for r, m in matrix.items()}),
                s.fusion_folds, s.seed + self.seed,
            )
            return selection.SelectionResult(
                strategy, strategy, f"every candidate, z-normalised by its held-out training scores, {strategy[7:]}",
                fused_stats=selection.normalisation_stats(scores), heldout_scores=scores,
            )

        proxy = selection.build_proxy_set(
            domains, lambda i: self._load(records[i]), self.features.sample_rate, s, s.seed + self.seed
        )
        anomalies = self._pooled(proxy.anomalies, self.rs)
        anomaly_matrix = {r: np.stack([p[r] for p in anomalies]) for r in self.rs}

        def fold_scorer(train, heldout, anomaly_idx):
            both = {r: np.concatenate([matrix[r][heldout], anomaly_matrix[r][anomaly_idx]]) for r in matrix}
            return {name: (v[: len(heldout)], v[len(heldout) :]) for name, v in fit_score(train, both).items()}

        table = selection.proxy_table(proxy, fold_scorer, s)
        chosen, reason = selection.choose(table, self.default_candidate, s.tie_tolerance)
        return selection.SelectionResult(strategy, chosen, reason, table=table)

    def _heldout_training_scores(self, domains, matrix, result: selection.SelectionResult) -> np.ndarray:
        """The training clips' scores from models that did not see them: the threshold's sample."""
        if self.fusion:
            return selection.fuse(result.heldout_scores, self.fused_stats, self.fusion)

        def scorer(train, heldout):
            (name,) = self.scorers
            kind, r = parse_candidate(name)
            return {name: self._new_scorer(kind).fit(matrix[r][train]).score(matrix[r][heldout])}

        n = len(domains)
        folds = None if n <= 64 else self.params.selection.n_folds  # leave-one-out while it is cheap
        (scores,) = selection.heldout_scores(n, domains, scorer, folds, self.seed).values()
        return scores

    def pooling_summary(self) -> str:
        if self.fusion:
            return f"fusion ({self.fusion}) of {len(self.scorers)} candidates"
        (name,) = self.scorers
        kind, r = parse_candidate(name)
        return f"{kind}, {describe_r(r)}"

    # -- scoring ------------------------------------------------------------
    def _score_pooled(self, pooled: list[dict[float, np.ndarray]]) -> np.ndarray:
        scores = {}
        for name, scorer in self.scorers.items():
            _, r = parse_candidate(name)
            scores[name] = scorer.score(np.stack([p[r] for p in pooled]))
        if self.fusion:
            return selection.fuse(scores, self.fused_stats, self.fusion)
        return next(iter(scores.values()))

    def score_waveforms(self, waveforms: list[np.ndarray]) -> np.ndarray:
        if not self.scorers:
            raise DetectorError("twfr detector is not fitted: fit or load it first")
        rs = sorted({parse_candidate(n)[1] for n in self.scorers})
        return self._score_pooled(self._pooled(list(waveforms), rs))

    def score_waveform(self, waveform: np.ndarray, record: ClipRecord | None = None) -> float:
        return float(self.score_waveforms([waveform])[0])

    def score(self, manifest: Manifest, progress: bool = True) -> dict[str, float]:
        scores: dict[str, float] = {}
        records = manifest.records
        for start in progress_bar(range(0, len(records), LOAD_CHUNK), desc="scoring", enabled=progress):
            chunk = records[start : start + LOAD_CHUNK]
            waves = [load_audio(r.path, self.features.sample_rate) for r in chunk]
            scores.update({r.name: float(v) for r, v in zip(chunk, self.score_waveforms(waves))})
        return scores

    # -- persistence --------------------------------------------------------
    def _save_weights(self, directory: Path) -> None:
        arrays = {f"{i}:{key}": value for i, s in enumerate(self.scorers.values()) for key, value in s.state().items()}
        np.savez(directory / STATE_FILE, **arrays)
        (directory / CANDIDATES_FILE).write_text(json.dumps({
            "candidates": list(self.scorers),
            "fusion": self.fusion,
            "fused_stats": {k: list(v) for k, v in self.fused_stats.items()},
        }, indent=2))

    def _load_weights(self, directory: Path) -> None:
        try:
            meta = json.loads((directory / CANDIDATES_FILE).read_text())
            arrays = np.load(directory / STATE_FILE)
            self.scorers = {}
            for i, name in enumerate(meta["candidates"]):
                kind, _ = parse_candidate(name)
                prefix = f"{i}:"
                state = {k[len(prefix):]: arrays[k] for k in arrays.files if k.startswith(prefix)}
                self.scorers[name] = self._new_scorer(kind).load(state)
            self.fusion = meta.get("fusion")
            self.fused_stats = {k: (float(v[0]), float(v[1])) for k, v in meta.get("fused_stats", {}).items()}
        except Exception as err:  # missing, truncated or foreign files: one clear error
            raise DetectorError(f"cannot load twfr state from {directory}: {err}") from None
        if not self.scorers:
            raise DetectorError(f"cannot load twfr state from {directory}: no fitted candidate")
