"""The DCASE baseline autoencoder as a Detector.

Trained on stacked log-mel frames of one machine type's normal training clips.
Two scores, as in the DCASE 2023 baseline:
- `mse`: mean squared reconstruction error over a clip's frames;
- `mahalanobis` (selective): the reconstruction-error vectors' Mahalanobis
  distance under the error covariance of the source training clips and, apart,
  of the target training clips; the clip's score is the smaller of the two
  frame-averaged distances, so a target clip is judged against target normals.
Covariances use Ledoit-Wolf shrinkage: a domain with only ten clips gives a few
thousand 640-dimensional vectors, too few for a stable plain inverse.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from asdflow.data.audio import load_audio
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.detectors.base import Detector, training_records
from asdflow.detectors.baseline_ae.torch_model import DenseAutoencoder
from asdflow.detectors.frame_pooling import resolve_time_pooling
from asdflow.detectors.pooling import pool_segments
from asdflow.detectors.threshold import gamma_threshold
from asdflow.errors import DetectorError
from asdflow.features.logmel import stack_frames
from asdflow.progress import progress_bar
from asdflow.torch_threads import torch_threads

SCORE_KINDS = ("mse", "mahalanobis")
LOAD_CHUNK = 32  # clips loaded and featurised together


class BaselineAEDetector(Detector):
    family = "baseline_ae"

    def __init__(self, config, features, seed: int = 0):
        super().__init__(config, features, seed)
        self.params = config.baseline_ae
        self.input_dim = features.n_mels * features.n_frames
        with torch.random.fork_rng():  # initial weights from the detector's seed, not the global RNG
            torch.manual_seed(seed)
            self.model = DenseAutoencoder(
                self.input_dim, self.params.hidden_size, self.params.n_hidden_layers, self.params.bottleneck_size
            )
        self.feature_mean = np.zeros(self.input_dim, dtype=np.float32)
        self.feature_std = np.ones(self.input_dim, dtype=np.float32)
        # per domain: (mean error vector, precision matrix)
        self.error_stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -- features -----------------------------------------------------------
    def _vectors(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        return [stack_frames(m, self.features.n_frames) for m in self.extractor.batch(waveforms)]

    def _load_vectors(self, records: list[ClipRecord], progress: bool, desc: str) -> list[np.ndarray]:
        vectors: list[np.ndarray] = []
        for start in progress_bar(range(0, len(records), LOAD_CHUNK), desc=desc, enabled=progress):
            chunk = records[start : start + LOAD_CHUNK]
            vectors.extend(self._vectors([load_audio(r.path, self.features.sample_rate) for r in chunk]))
        for record, v in zip(records, vectors):
            if v.shape[0] == 0:
                raise DetectorError(f"{record.path}: clip too short for {self.features.n_frames} stacked frames")
            if not np.all(np.isfinite(v)):
                raise DetectorError(f"{record.path}: non-finite log-mel features")
        return vectors

    def _subsample(self, vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        limit = self.params.max_frames_per_clip
        if limit is None or len(vectors) <= limit:
            return vectors
        return vectors[np.sort(rng.choice(len(vectors), limit, replace=False))]

    # -- training -----------------------------------------------------------
    def fit(self, manifest: Manifest, progress: bool = True) -> dict[str, Any]:
        with torch_threads(self.params.num_threads):
            return self._fit(manifest, progress)

    def _fit(self, manifest: Manifest, progress: bool) -> dict[str, Any]:
        started = time.perf_counter()
        records = training_records(manifest)
        self.machine_type = records[0].machine_type
        if len(records) < 2:
            raise DetectorError(f"{self.machine_type}: need at least 2 normal training clips, got {len(records)}")
        self.time_r, pooling = resolve_time_pooling(self, records, manifest.root)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)

        per_clip = [self._subsample(v, rng) for v in self._load_vectors(records, progress, "features")]
        data = np.concatenate(per_clip)
        self.feature_mean = data.mean(axis=0).astype(np.float32)
        self.feature_std = (data.std(axis=0) + 1e-6).astype(np.float32)
        normed = torch.from_numpy((data - self.feature_mean) / self.feature_std)

        losses = self._train(normed, rng, progress)
        self._fit_error_stats(records, per_clip)
        train_scores = np.concatenate(
            [self._score_batch(per_clip[i : i + LOAD_CHUNK])[self.params.score] for i in range(0, len(per_clip), LOAD_CHUNK)]
        )
        self.threshold = gamma_threshold(train_scores, self.config.threshold_quantile)
        self.fit_info = {
            "machine_type": self.machine_type,
            "n_clips": len(records),
            "n_vectors": int(len(data)),
            "domains": {d: int(sum(r.domain == d for r in records)) for d in ("source", "target")},
            "final_train_loss": losses["train"][-1],
            "final_val_loss": losses["val"][-1] if losses["val"] else None,
            "threshold": self.threshold,
            "time_pooling": pooling,
            "seconds": time.perf_counter() - started,
        }
        return self.fit_info

    def _train(self, data: torch.Tensor, rng: np.random.Generator, progress: bool) -> dict[str, list[float]]:
        p = self.params
        order = torch.from_numpy(rng.permutation(len(data)))
        n_val = int(len(data) * p.validation_fraction) if len(data) >= 20 else 0
        val, train = data[order[:n_val]], data[order[n_val:]]
        optimiser = torch.optim.Adam(self.model.parameters(), lr=p.learning_rate)
        generator = torch.Generator().manual_seed(self.seed)
        history: dict[str, list[float]] = {"train": [], "val": []}
        bar = progress_bar(range(p.epochs), desc=f"train {self.machine_type}", enabled=progress)
        for _ in bar:
            self.model.train()
            total, count = 0.0, 0
            for batch_idx in torch.randperm(len(train), generator=generator).split(p.batch_size):
                if len(batch_idx) < 2:  # BatchNorm needs two rows
                    continue
                batch = train[batch_idx]
                loss = torch.nn.functional.mse_loss(self.model(batch), batch)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
                count += len(batch)
            history["train"].append(total / max(count, 1))
            if n_val:
                self.model.eval()
                with torch.no_grad():
                    history["val"].append(float(torch.nn.functional.mse_loss(self.model(val), val)))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history['train'][-1]:.4f}")
        self.model.eval()
        return history

    def _errors(self, vectors: np.ndarray) -> np.ndarray:
        x = torch.from_numpy((vectors - self.feature_mean) / self.feature_std)
        with torch.no_grad():
            return (self.model(x) - x).numpy()

    def _fit_error_stats(self, records: list[ClipRecord], per_clip: list[np.ndarray]) -> None:
        self.error_stats = {}
        for domain in ("source", "target"):
            chosen = [v for r, v in zip(records, per_clip) if (r.domain or "source") == domain]
            if not chosen:
                continue
            errors = np.concatenate([self._errors(v) for v in chosen]).astype(np.float64)
            if len(errors) < 2:
                continue
            estimate = LedoitWolf().fit(errors)
            self.error_stats[domain] = (estimate.location_.astype(np.float32), estimate.precision_.astype(np.float32))

    # -- scoring ------------------------------------------------------------
    def _vector_scores(self, clips: list[np.ndarray], kinds: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
        """kind -> per-vector scores of every clip's stacked vectors, one forward pass for the batch
        (for `mahalanobis` one array per training domain: the clip keeps its nearer domain after pooling)."""
        for v in clips:
            if v.shape[0] == 0:
                raise DetectorError(f"clip too short: it gives no {self.features.n_frames}-frame vector")
        with torch_threads(self.params.num_threads), torch.no_grad():
            x = torch.from_numpy((np.concatenate(clips) - self.feature_mean) / self.feature_std)
            errors = self.model(x) - x
            out: dict[str, list[np.ndarray]] = {}
            if "mse" in kinds or not self.error_stats:
                out["mse"] = [(errors**2).mean(dim=1).double().numpy()]
            if "mahalanobis" in kinds and self.error_stats:
                out["mahalanobis"] = []
                for mean, precision in self.error_stats.values():
                    centred = errors - torch.from_numpy(mean)
                    squared = ((centred @ torch.from_numpy(precision)) * centred).sum(dim=1).clamp_min(0.0)
                    out["mahalanobis"].append(squared.sqrt().double().numpy())
            elif "mahalanobis" in kinds:
                out["mahalanobis"] = out["mse"]
        return out

    def _score_batch(
        self, clips: list[np.ndarray], kinds: tuple[str, ...] = SCORE_KINDS, rs: list[float] | None = None
    ) -> dict[str, np.ndarray] | dict[float, dict[str, np.ndarray]]:
        """Clip scores of several clips' stacked vectors: per-vector scores pooled over each clip's frames
        with GWRP at the detector's r (or, with `rs`, r -> kind -> scores for every r asked)."""
        lengths = [len(v) for v in clips]
        pooled: dict[float, dict[str, np.ndarray]] = {}
        for kind, per_domain in self._vector_scores(clips, kinds).items():
            per_r = [pool_segments(values, lengths, rs or [self.time_r]) for values in per_domain]
            for r in rs or [self.time_r]:
                pooled.setdefault(r, {})[kind] = np.minimum.reduce([p[r] for p in per_r])
        return pooled if rs else pooled[self.time_r]

    def candidate_scores(self, waveforms, records, rs) -> dict[float, np.ndarray]:
        kind = self.params.score
        return {r: values[kind] for r, values in self._score_batch(self._vectors(waveforms), (kind,), list(rs)).items()}

    def _score_vectors(self, vectors: np.ndarray) -> dict[str, float]:
        return {kind: float(values[0]) for kind, values in self._score_batch([vectors]).items()}

    def score_kinds(self, waveform: np.ndarray) -> dict[str, float]:
        """Both scores of one waveform (the benchmarks report both from one model)."""
        return self._score_vectors(self._vectors([waveform])[0])

    def score_waveform(self, waveform: np.ndarray, record: ClipRecord | None = None) -> float:
        return float(self.score_waveforms([waveform])[0])

    def score_waveforms(self, waveforms: list[np.ndarray]) -> np.ndarray:
        kind = self.params.score
        return self._score_batch(self._vectors(waveforms), (kind,))[kind]

    def score_manifest_kinds(self, manifest: Manifest, progress: bool = True) -> dict[str, dict[str, float]]:
        """kind -> {name: score} for every clip, both kinds from one pass over the audio."""
        out: dict[str, dict[str, float]] = {k: {} for k in SCORE_KINDS}
        vectors = self._load_vectors(manifest.records, progress, "scoring")
        for start in range(0, len(vectors), LOAD_CHUNK):
            chunk = manifest.records[start : start + LOAD_CHUNK]
            for kind, values in self._score_batch(vectors[start : start + LOAD_CHUNK]).items():
                out[kind].update({r.name: float(v) for r, v in zip(chunk, values)})
        return out

    def score(self, manifest: Manifest, progress: bool = True) -> dict[str, float]:
        return self.score_manifest_kinds(manifest, progress)[self.params.score]

    # -- persistence --------------------------------------------------------
    def _save_weights(self, directory: Path) -> None:
        torch.save(self.model.state_dict(), directory / "autoencoder.pt")
        arrays = {"feature_mean": self.feature_mean, "feature_std": self.feature_std}
        for domain, (mean, precision) in self.error_stats.items():
            arrays[f"{domain}_error_mean"] = mean
            arrays[f"{domain}_precision"] = precision
        np.savez(directory / "statistics.npz", **arrays)

    def _load_weights(self, directory: Path) -> None:
        try:
            self.model.load_state_dict(torch.load(directory / "autoencoder.pt", map_location="cpu", weights_only=True))
            arrays = np.load(directory / "statistics.npz")
        except Exception as err:  # missing, truncated or foreign files: one clear error, whatever torch raises
            raise DetectorError(f"cannot load baseline_ae weights from {directory}: {err}") from None
        self.model.eval()
        self.feature_mean, self.feature_std = arrays["feature_mean"], arrays["feature_std"]
        self.error_stats = {
            d: (arrays[f"{d}_error_mean"], arrays[f"{d}_precision"])
            for d in ("source", "target")
            if f"{d}_precision" in arrays
        }
