"""The conditional autoencoder as a Detector (Conv-TasNet report's detector).

Training, on one machine type's normal training clips:
1. a condition per clip: domain one-hot + attribute one-hots, or k-means pseudo-labels of
   clip-level log-mel means when attributes are missing (`conditioning.py`);
2. a dense autoencoder on stacked log-mel frames (the baseline's input) that gets the
   condition at its bottleneck (and input), trained with MSE (`torch_model.py`);
3. each training clip's embedding in reconstruction-error space: per-mel-bin squared errors
   (averaged over the stacked frames), pooled over time per mel bin with GWRP r
   (`asdflow.detectors.pooling`: r 0 = max, for short events such as a valve's open/close
   clicks; r 1 = mean, for steady changes), optionally logged, then standardised. r is
   `time_pooling.r`, or with "auto" chosen per machine type from normal clips alone
   (`frame_pooling.resolve_time_pooling`), before training;
4. per domain, a bank of these embeddings, scored by kNN with per-domain normalisation
   (`knn.py`); the threshold is a gamma quantile of the training clips' leave-one-out scores.

`candidate_scores` (the selection's hook) scores clips under several r from one network pass:
the fitted detector keeps, in memory only, its training clips' embeddings under every r of
`time_pooling.r_grid` and builds that r's standardisation and kNN banks when first asked.

Scoring: the clip's condition comes from its record (domain + attributes). Where that is not
possible (serving without a file name: `record=None`, an unknown domain, or attribute values
never seen in training) the clip is scored under every training condition that fits what is
known (of its domain, or of both domains) and the smallest score is kept: the most lenient
reading, as the min over domains already is.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from asdflow.data.audio import load_audio
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.detectors.base import Detector
from asdflow.detectors.base import training_records
from asdflow.detectors.conditional_ae.conditioning import DOMAINS, ConditionSpace, choose_mode
from asdflow.detectors.conditional_ae.knn import DomainKNN
from asdflow.detectors.conditional_ae.torch_model import ConditionalAutoencoder
from asdflow.detectors.frame_pooling import fixed_choice, resolve_time_pooling
from asdflow.detectors.pooling import gwrp_many
from asdflow.detectors.threshold import gamma_threshold
from asdflow.errors import AsdflowError, DetectorError
from asdflow.features.logmel import stack_frames
from asdflow.progress import progress_bar
from asdflow.torch_threads import torch_threads

LOAD_CHUNK = 32  # clips loaded and featurised together
LOG_FLOOR = 1e-8  # inside the log of the pooled errors
CONDITIONS_FILE = "conditions.json"

# a fitted r's standardisation and kNN: (embedding mean, embedding std, per-domain banks)
Bank = tuple[np.ndarray, np.ndarray, DomainKNN]


def error_embeddings(per_bin: np.ndarray, rs: list[float], log: bool) -> dict[float, np.ndarray]:
    """(n_vectors, n_mels) errors -> r -> the clip's raw embedding: each mel bin's errors pooled
    over time with GWRP r (0 = max, 1 = mean), sorted once for every r."""
    pooled = gwrp_many(per_bin, rs, axis=0)
    return {r: np.log(e + LOG_FLOOR) if log else e for r, e in pooled.items()}


def error_embedding(per_bin: np.ndarray, r: float, log: bool) -> np.ndarray:
    """(n_vectors, n_mels) errors -> the clip's raw embedding under GWRP r."""
    return error_embeddings(per_bin, [r], log)[float(r)]


class ConditionalAEDetector(Detector):
    family = "conditional_ae"
    uses_records: ClassVar[bool] = True  # the registry's pyfunc and the gate hand each clip its record

    def __init__(self, config, features, seed: int = 0):
        super().__init__(config, features, seed)
        self.params = config.conditional_ae
        self.input_dim = features.n_mels * features.n_frames
        self.model: ConditionalAutoencoder | None = None  # built at fit/load: its size depends on the conditions
        self.space: ConditionSpace | None = None
        self.knn: DomainKNN | None = None
        self.feature_mean = np.zeros(self.input_dim, dtype=np.float32)
        self.feature_std = np.ones(self.input_dim, dtype=np.float32)
        self.embedding_mean: np.ndarray | None = None
        self.embedding_std: np.ndarray | None = None
        # in memory only (not saved): the training clips' raw embeddings under every r of the grid
        # and their domains, and the banks built from them, for `candidate_scores`
        self._train_raw: dict[float, np.ndarray] = {}
        self._train_domains: list[str] = []
        self._banks: dict[float, Bank] = {}

    def n_parameters(self) -> int:
        return 0 if self.model is None else sum(p.numel() for p in self.model.parameters())

    # -- features -----------------------------------------------------------
    def _checked_logmel(self, logmel: np.ndarray, where: str) -> np.ndarray:
        if not np.all(np.isfinite(logmel)):
            raise DetectorError(f"{where}: non-finite (NaN/inf) log-mel features")
        if logmel.shape[1] < self.features.n_frames:
            raise DetectorError(f"{where}: clip too short for {self.features.n_frames} stacked frames")
        return logmel

    def _logmels(self, waveforms: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
        for wave, name in zip(waveforms, names):
            if not np.all(np.isfinite(wave)):
                raise DetectorError(f"{name}: the waveform holds NaN or infinite samples")
        return [self._checked_logmel(m, n) for m, n in zip(self.extractor.batch(waveforms), names)]

    def _load_logmels(self, records: list[ClipRecord], progress: bool, desc: str) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in progress_bar(range(0, len(records), LOAD_CHUNK), desc=desc, enabled=progress):
            chunk = records[start : start + LOAD_CHUNK]
            try:
                waves = [load_audio(r.path, self.features.sample_rate) for r in chunk]
            except AsdflowError as err:  # NaN samples, corrupt or empty files: a detector error naming the clip
                raise DetectorError(f"conditional_ae cannot use a clip: {err}") from None
            out.extend(self._logmels(waves, [r.path for r in chunk]))
        return out

    def _build_model(self, condition_dim: int) -> ConditionalAutoencoder:
        p = self.params
        with torch.random.fork_rng():  # initial weights from the detector's seed, not the global RNG
            torch.manual_seed(self.seed)
            return ConditionalAutoencoder(
                self.input_dim, condition_dim, p.hidden_size, p.n_hidden_layers, p.bottleneck_size,
                condition_encoder=p.condition_on == "both",
            )

    # -- training -----------------------------------------------------------
    def fit(self, manifest: Manifest, progress: bool = True) -> dict[str, Any]:
        with torch_threads(self.params.num_threads):
            return self._fit(manifest, progress)

    def _check_training_set(self, records: list[ClipRecord]) -> dict[str, int]:
        counts = {d: sum((r.domain or "source") == d for r in records) for d in DOMAINS}
        needed = 2  # leave-one-out kNN normalisation needs a second clip in each domain
        for domain, n in counts.items():
            if n == 0 and not self.params.require_both_domains:
                continue
            if n == 0:
                raise DetectorError(
                    f"{self.machine_type}: no {domain}-domain normal training clips; the conditional AE scores "
                    f"against both domains (set conditional_ae.require_both_domains: false to allow one)"
                )
            if n < needed:
                raise DetectorError(
                    f"{self.machine_type}: {n} {domain}-domain training clip(s), too few for kNN scoring "
                    f"(n_neighbors {self.params.n_neighbors}, leave-one-out needs at least {needed})"
                )
        return counts

    def _resolve_time_pooling(
        self, records: list[ClipRecord], root: str, counts: dict[str, int]
    ) -> tuple[float, dict[str, Any]]:
        """(r, selection record): the shared selection, unless one of its folds would leave a domain
        too few clips for this family's kNN banks (then the fixed default, said in the record)."""
        pooling = self.params.time_pooling
        s = pooling.selection
        if pooling.r == "auto" and s.strategy == "proxy" and len(records) >= s.min_clips:
            n_folds = max(2, min(s.n_folds, len(records)))  # as selection.fold_splits
            short = [f"{n} {d}" for d, n in counts.items() if n and n - math.ceil(n / n_folds) < 2]
            if short:
                return fixed_choice(
                    pooling.default_r,
                    f"{' and '.join(short)}-domain training clips: a held-out fold of {n_folds} would leave "
                    "fewer than 2 for the kNN bank: the fixed default",
                    "proxy",
                )
        return resolve_time_pooling(self, records, root)

    def _fit(self, manifest: Manifest, progress: bool) -> dict[str, Any]:
        started = time.perf_counter()
        p = self.params
        records = training_records(manifest)
        self.machine_type = records[0].machine_type
        counts = self._check_training_set(records)
        self.time_r, pooling = self._resolve_time_pooling(records, manifest.root, counts)
        rng = np.random.default_rng(self.seed)

        logmels = self._load_logmels(records, progress, "features")
        clip_means = np.stack([m.mean(axis=1) for m in logmels])
        self.space, keys = ConditionSpace.fit(
            choose_mode(p.conditioning, records), records, clip_means, p.n_clusters, self.seed
        )
        self.model = self._build_model(self.space.dim)
        stacked = [stack_frames(m, self.features.n_frames) for m in logmels]
        conditions = np.stack([self.space.vector(k) for k in keys])

        kept = [self._subsample(v, rng) for v in stacked]
        data = np.concatenate(kept)
        self.feature_mean = data.mean(axis=0).astype(np.float32)
        self.feature_std = (data.std(axis=0) + 1e-6).astype(np.float32)
        clip_of_row = np.repeat(np.arange(len(kept)), [len(v) for v in kept])
        losses = self._train(
            torch.from_numpy((data - self.feature_mean) / self.feature_std),
            torch.from_numpy(conditions[clip_of_row]),
            progress,
        )

        # every training clip's embedding under the chosen r and every r of the grid (one network pass)
        rs = list(dict.fromkeys([self.time_r, *map(float, p.time_pooling.r_grid)]))
        per_clip = [
            error_embeddings(self.per_bin_errors(v, conditions[i]), rs, p.log_errors) for i, v in enumerate(stacked)
        ]
        self._train_raw = {r: np.stack([e[r] for e in per_clip]) for r in rs}
        self._train_domains = [r.domain or "source" for r in records]
        self._banks = {}
        self.embedding_mean, self.embedding_std, self.knn, train_scores = self._fit_bank(self._train_raw[self.time_r])
        self.threshold = gamma_threshold(train_scores, self.config.threshold_quantile)  # z-scores: may be < 0
        self.fit_info = {
            "machine_type": self.machine_type,
            "n_clips": len(records),
            "n_vectors": int(len(data)),
            "domains": counts,
            "conditioning": self.space.mode,
            "conditions": ["/".join(k) for k in self.space.training_keys],
            "n_neighbors_used": self.knn.k,
            "n_parameters": self.n_parameters(),
            "final_train_loss": losses[-1] if losses else None,
            "threshold": self.threshold,
            "time_pooling": pooling,
            "seconds": time.perf_counter() - started,
        }
        return self.fit_info

    def _fit_bank(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, DomainKNN, np.ndarray]:
        """The training clips' raw embeddings under one r -> (mean, std, per-domain kNN banks of the
        standardised embeddings, each training clip's leave-one-out score)."""
        domains = self._train_domains
        mean = raw.mean(axis=0)
        std = raw.std(axis=0) + 1e-6
        embeddings = (raw - mean) / std
        rows = {d: [i for i, x in enumerate(domains) if x == d] for d in DOMAINS if d in domains}
        knn = DomainKNN({d: embeddings[idx] for d, idx in rows.items()}, self.params.n_neighbors)
        # each training clip scored without itself in its own bank: honest scores for the threshold
        position = {i: j for idx in rows.values() for j, i in enumerate(idx)}
        exclude = {d: [position[i] if domains[i] == d else None for i in range(len(domains))] for d in rows}
        return mean, std, knn, knn.score(embeddings, exclude)

    def _subsample(self, vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        limit = self.params.max_frames_per_clip
        if limit is None or len(vectors) <= limit:
            return vectors
        return vectors[np.sort(rng.choice(len(vectors), limit, replace=False))]

    def _train(self, data: torch.Tensor, conditions: torch.Tensor, progress: bool) -> list[float]:
        p = self.params
        assert self.model is not None
        optimiser = torch.optim.Adam(self.model.parameters(), lr=p.learning_rate)
        generator = torch.Generator().manual_seed(self.seed)
        history: list[float] = []
        bar = progress_bar(range(p.epochs), desc=f"train {self.machine_type}", enabled=progress)
        for _ in bar:
            self.model.train()
            total, count = 0.0, 0
            for batch in torch.randperm(len(data), generator=generator).split(p.batch_size):
                if len(batch) < 2:  # BatchNorm needs two rows
                    continue
                x = data[batch]
                loss = torch.nn.functional.mse_loss(self.model(x, conditions[batch]), x)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
                count += len(batch)
            history.append(total / max(count, 1))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]:.4f}")
        self.model.eval()
        return history

    # -- the reconstruction-error embedding --------------------------------
    def per_bin_errors(self, vectors: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """One clip's stacked vectors under one condition -> (n_vectors, n_mels) squared errors,
        averaged over the stacked frames."""
        assert self.model is not None
        x = torch.from_numpy((vectors - self.feature_mean) / self.feature_std)
        c = torch.from_numpy(np.broadcast_to(condition, (len(vectors), len(condition))).copy())
        with torch.no_grad():
            squared = (self.model(x, c) - x).square().double().numpy()
        return squared.reshape(len(vectors), self.features.n_frames, self.features.n_mels).mean(axis=1)

    def _embedding(self, vectors: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """One clip's stacked vectors under one condition -> its raw (unstandardised) error embedding
        under the detector's r."""
        return error_embedding(self.per_bin_errors(vectors, condition), self.time_r, self.params.log_errors)

    # -- scoring ------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.model is None or self.space is None or self.knn is None:
            raise DetectorError("conditional_ae detector is not fitted: fit or load it first")

    def _bank(self, r: float) -> Bank:
        """The standardisation and kNN banks of the training embeddings under r."""
        assert self.knn is not None and self.embedding_mean is not None and self.embedding_std is not None
        if r == self.time_r:
            return self.embedding_mean, self.embedding_std, self.knn
        if r not in self._banks:
            if r not in self._train_raw:
                raise DetectorError(
                    f"conditional_ae scores under r={r:g} only when fitted in this process with r in "
                    "time_pooling.r_grid (the training embeddings under other r are not saved); "
                    f"its r is {self.time_r:g}"
                )
            self._banks[r] = self._fit_bank(self._train_raw[r])[:3]
        return self._banks[r]

    def _candidate_errors(self, logmel: np.ndarray, record: ClipRecord | None) -> list[np.ndarray]:
        """One clip's per-bin errors under each condition it may be scored under (one network pass each)."""
        assert self.space is not None
        vectors = stack_frames(logmel, self.features.n_frames)
        keys = self.space.candidates(record, logmel.mean(axis=1))
        return [self.per_bin_errors(vectors, self.space.vector(k)) for k in keys]

    def _scores_under(
        self, logmels: list[np.ndarray], records: list[ClipRecord | None], rs: list[float]
    ) -> dict[float, np.ndarray]:
        """r -> clip scores: per condition, the kNN score of the clip's embedding under r; per clip the
        smallest over its conditions."""
        rs = list(dict.fromkeys(map(float, rs)))
        if not logmels:
            return {r: np.zeros(0) for r in rs}
        errors = [self._candidate_errors(m, record) for m, record in zip(logmels, records)]
        embedded = [error_embeddings(e, rs, self.params.log_errors) for clip in errors for e in clip]
        ends = np.cumsum([len(clip) for clip in errors])[:-1]
        out: dict[float, np.ndarray] = {}
        for r in rs:
            mean, std, knn = self._bank(r)
            scores = knn.score((np.stack([e[r] for e in embedded]) - mean) / std)
            out[r] = np.asarray([s.min() for s in np.split(scores, ends)], dtype=np.float64)
        return out

    def _score_logmel(self, logmel: np.ndarray, record: ClipRecord | None) -> float:
        return float(self._scores_under([logmel], [record], [self.time_r])[self.time_r][0])

    def candidate_scores(
        self, waveforms: list[np.ndarray], records: list[ClipRecord | None], rs: list[float]
    ) -> dict[float, np.ndarray]:
        """r -> the clips' scores under each time pooling r, each clip scored with its record."""
        self._require_fitted()
        names = [r.name if r is not None else f"waveform {i}" for i, r in enumerate(records)]
        with torch_threads(self.params.num_threads):
            logmels = self._logmels([np.asarray(w, dtype=np.float32) for w in waveforms], names)
            return self._scores_under(logmels, records, rs)

    def score_waveform(self, waveform: np.ndarray, record: ClipRecord | None = None) -> float:
        self._require_fitted()
        name = record.name if record is not None else "waveform"
        with torch_threads(self.params.num_threads):
            return self._score_logmel(self._logmels([np.asarray(waveform, dtype=np.float32)], [name])[0], record)

    def score_waveforms(self, waveforms: list[np.ndarray]) -> np.ndarray:
        self._require_fitted()
        with torch_threads(self.params.num_threads):
            logmels = self._logmels([np.asarray(w, dtype=np.float32) for w in waveforms], [f"waveform {i}" for i in range(len(waveforms))])
            return np.asarray([self._score_logmel(m, None) for m in logmels], dtype=np.float64)

    def score(self, manifest: Manifest, progress: bool = True) -> dict[str, float]:
        self._require_fitted()
        with torch_threads(self.params.num_threads):
            logmels = self._load_logmels(manifest.records, progress, "scoring")
            return {r.name: self._score_logmel(m, r) for r, m in zip(manifest.records, logmels)}

    # -- persistence --------------------------------------------------------
    def _save_weights(self, directory: Path) -> None:
        self._require_fitted()
        assert self.model is not None and self.space is not None and self.knn is not None
        torch.save(self.model.state_dict(), directory / "conditional_ae.pt")
        np.savez(
            directory / "statistics.npz",
            feature_mean=self.feature_mean,
            feature_std=self.feature_std,
            embedding_mean=self.embedding_mean,
            embedding_std=self.embedding_std,
            **self.knn.arrays(),
        )
        (directory / CONDITIONS_FILE).write_text(json.dumps(self.space.to_json(), indent=2))

    def _load_weights(self, directory: Path) -> None:
        try:
            self.space = ConditionSpace.from_json(json.loads((directory / CONDITIONS_FILE).read_text()))
            self.model = self._build_model(self.space.dim)
            self.model.load_state_dict(torch.load(directory / "conditional_ae.pt", map_location="cpu", weights_only=True))
            arrays = np.load(directory / "statistics.npz")
            self.feature_mean, self.feature_std = arrays["feature_mean"], arrays["feature_std"]
            self.embedding_mean, self.embedding_std = arrays["embedding_mean"], arrays["embedding_std"]
            self.knn = DomainKNN.from_arrays(arrays, self.params.n_neighbors)
        except DetectorError:
            raise
        except Exception as err:  # missing, truncated or foreign files: one clear error, whatever torch raises
            raise DetectorError(f"cannot load conditional_ae weights from {directory}: {err}") from None
        self.model.eval()
