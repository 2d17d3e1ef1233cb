"""AudDSR (DSR, Zavrtanik et al. 2022, on log-mel spectrograms) as a Detector.

Training, on the normal training clips of one machine type:
1. a VQ-VAE-2 (asdflow.simulation.vqvae2) learns to reconstruct log-mel crops;
   it is then frozen, with its general decoder;
2. on every training crop (with probability `anomaly_probability`) codebook sampling
   (asdflow.simulation.codebook_sampling) replaces the quantized features inside a
   Perlin or band-segment mask; the object-specific decoder learns to restore the
   normal spectrogram from those features, and the anomaly-detection U-Net, fed the
   general decoder's output and the object-specific reconstruction, learns the
   changed cells with a focal loss.
Scoring: the whole clip goes through VQ-VAE-2 encoder, both decoders and the U-Net
(all convolutional); the score is the mean of the sigmoid anomaly map (or the mean
of its top `top_k_percent` cells). AudDSR uses no domain or attribute: `record` is
ignored, so a clip scores the same with or without it (serving without a filename).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.detectors.base import Detector
from asdflow.detectors.base import training_records
from asdflow.detectors.frame_pooling import resolve_time_pooling
from asdflow.detectors.pooling import gwrp
from asdflow.detectors.auddsr.torch_model import MAP_FACTOR, AnomalyUNet, ObjectSpecificDecoder, focal_loss
from asdflow.detectors.threshold import gamma_threshold
from asdflow.errors import DetectorError
from asdflow.progress import progress_bar
from asdflow.simulation.codebook_sampling import LEVELS, perturb_codes
from asdflow.simulation.masks import sample_mask
from asdflow.simulation.spectrogram import iter_logmels
from asdflow.simulation.vqvae2 import VQVAE2, random_crops, train_vqvae2
from asdflow.torch_threads import torch_threads

WEIGHTS_FILE = "auddsr.pt"
LOAD_CHUNK = 32  # clips loaded and featurised together
PAD_MULTIPLE = 4 * MAP_FACTOR  # the U-Net pools its 1/4-resolution grid twice
# DSR perturbs the top level, the bottom level, or both: equally often
LEVEL_CHOICES: tuple[tuple[str, ...], ...] = (("top",), ("bottom",), LEVELS)


def _check_settings(p) -> None:
    """Settings the config class cannot check by type alone: one clear error naming the field."""
    problems = []
    for name in ("hidden_channels", "embedding_dim", "vq_steps", "vq_batch_size", "steps", "batch_size",
                 "unet_channels", "min_train_clips"):
        if getattr(p, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(p, name)}")
    if p.hidden_channels % 2:
        problems.append(f"hidden_channels must be even, got {p.hidden_channels}")
    for name in ("n_codes_top", "n_codes_bottom"):
        if getattr(p, name) < 2:
            problems.append(f"{name} must be >= 2, got {getattr(p, name)}")
    if not 0.0 <= p.anomaly_probability <= 1.0:
        problems.append(f"anomaly_probability must be in [0, 1], got {p.anomaly_probability}")
    for name, low_bound in (("coverage_range", 0.0), ("strength_range", 0.0)):
        low, high = getattr(p, name)
        if not low_bound < low <= high <= 1.0:
            problems.append(f"{name} must satisfy 0 < low <= high <= 1, got {[low, high]}")
    if not p.mask_kinds:
        problems.append("mask_kinds is empty")
    if not 0.0 < p.top_k_percent <= 100.0:
        problems.append(f"top_k_percent must be in (0, 100], got {p.top_k_percent}")
    if problems:
        raise DetectorError("auddsr settings: " + "; ".join(problems))


class AudDSRDetector(Detector):
    family = "auddsr"

    def __init__(self, config, features, seed: int = 0):
        super().__init__(config, features, seed)
        self.params = p = config.auddsr
        if features.n_mels % PAD_MULTIPLE:
            raise DetectorError(f"auddsr needs n_mels divisible by {PAD_MULTIPLE}, got {features.n_mels}")
        if p.crop_frames % PAD_MULTIPLE or p.crop_frames < PAD_MULTIPLE:
            raise DetectorError(f"auddsr crop_frames must be a positive multiple of {PAD_MULTIPLE}, got {p.crop_frames}")
        _check_settings(p)
        with torch.random.fork_rng():  # initial weights and codebooks from the detector's seed
            torch.manual_seed(seed)
            self.vqvae = VQVAE2(
                features.n_mels, p.hidden_channels, p.embedding_dim, p.n_codes_top, p.n_codes_bottom,
                p.n_residual, p.ema_decay, p.commitment,
            )
            self.object_decoder = ObjectSpecificDecoder(p.embedding_dim, p.hidden_channels, p.n_residual)
            self.unet = AnomalyUNet(p.unet_channels)
        self._eval()

    def _eval(self) -> None:
        for module in (self.vqvae, self.object_decoder, self.unet):
            module.eval()

    def parameter_count(self) -> int:
        return sum(p.numel() for m in (self.vqvae, self.object_decoder, self.unet) for p in m.parameters())

    # -- features -----------------------------------------------------------
    def _check_spec(self, spec: np.ndarray, where: str) -> None:
        if not np.all(np.isfinite(spec)):
            raise DetectorError(f"{where}: non-finite log-mel features (NaN or inf in the audio)")

    def _prepare(self, spec: np.ndarray) -> np.ndarray:
        """The log-mel every stage sees: as extracted, or minus its per-mel median over time."""
        if self.params.clip_normalisation == "median":
            return (spec - np.median(spec, axis=1, keepdims=True)).astype(np.float32)
        return spec

    def _load_specs(self, records: list[ClipRecord], progress: bool, desc: str) -> list[np.ndarray]:
        specs = [spec for _, spec in iter_logmels(records, self.features, LOAD_CHUNK, progress, desc, self.extractor)]
        for record, spec in zip(records, specs):
            self._check_spec(spec, str(record.path))
        return specs

    # -- training -----------------------------------------------------------
    def fit(self, manifest: Manifest, progress: bool = True) -> dict[str, Any]:
        with torch_threads(self.params.num_threads), torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return self._fit(manifest, progress)

    def _fit(self, manifest: Manifest, progress: bool) -> dict[str, Any]:
        started = time.perf_counter()
        records = training_records(manifest)
        self.machine_type = records[0].machine_type
        if len(records) < self.params.min_train_clips:
            raise DetectorError(
                f"{self.machine_type}: auddsr needs at least {self.params.min_train_clips} normal training clips, "
                f"got {len(records)}"
            )
        self.time_r, pooling = resolve_time_pooling(self, records, manifest.root)
        specs = self._load_specs(records, progress, "features")
        info = self.fit_spectrograms(specs, progress, n_clips=len(records), started=started, records=records)
        info["time_pooling"] = pooling
        return info

    def fit_spectrograms(
        self,
        specs: list[np.ndarray],
        progress: bool = False,
        n_clips: int | None = None,
        started: float | None = None,
        records: list[ClipRecord] | None = None,
    ) -> dict[str, Any]:
        """Train every stage on normal log-mels (n_mels, frames) in dB; set the threshold; return fit_info."""
        started = started if started is not None else time.perf_counter()
        p = self.params
        if records is None:  # log-mels alone (benchmarks): no clips to select on, a fixed r
            r = p.time_pooling.r
            self.time_r = float(p.time_pooling.default_r if r == "auto" else r)
        if len(specs) < p.min_train_clips:
            raise DetectorError(f"auddsr needs at least {p.min_train_clips} normal training clips, got {len(specs)}")
        for i, spec in enumerate(specs):
            self._check_spec(spec, f"training clip {i}")
        specs = [self._prepare(s) for s in specs]
        vq_losses = train_vqvae2(
            self.vqvae, specs, p.vq_steps, p.vq_batch_size, p.crop_frames, p.vq_learning_rate, self.seed, progress
        )
        self.vqvae.eval()
        for parameter in self.vqvae.parameters():
            parameter.requires_grad_(False)
        vq_seconds = time.perf_counter() - started
        history = self._train_detection(specs, progress)
        self._eval()
        train_scores = self._scores_of_prepared(specs)
        self.threshold = gamma_threshold(train_scores, self.config.threshold_quantile)
        self.fit_info = {
            "machine_type": self.machine_type,
            "n_clips": n_clips if n_clips is not None else len(specs),
            "domains": {d: int(sum(r.domain == d for r in records)) for d in ("source", "target")} if records else {},
            "parameters": self.parameter_count(),
            "final_vq_loss": float(np.mean(vq_losses[-20:])),
            "final_reconstruction_loss": float(np.mean(history["reconstruction"][-20:])),
            "final_focal_loss": float(np.mean(history["focal"][-20:])),
            "threshold": self.threshold,
            "vq_seconds": vq_seconds,
            "seconds": time.perf_counter() - started,
        }
        return self.fit_info

    def _training_masks(self, batch: int, shape: tuple[int, int], rng: np.random.Generator):
        p = self.params
        masks = np.zeros((batch, *shape), dtype=bool)
        for b in range(batch):
            if rng.uniform() < p.anomaly_probability:
                kind = p.mask_kinds[int(rng.integers(len(p.mask_kinds)))]
                masks[b] = sample_mask(shape, kind, float(rng.uniform(*p.coverage_range)), rng)
        strengths = rng.uniform(*p.strength_range, size=batch)
        levels = [LEVEL_CHOICES[int(i)] for i in rng.integers(len(LEVEL_CHOICES), size=batch)]
        return torch.from_numpy(masks), strengths, levels

    def _train_detection(self, specs: list[np.ndarray], progress: bool) -> dict[str, list[float]]:
        p = self.params
        rng = np.random.default_rng(self.seed + 1)
        scaled = [self.vqvae.standardise(torch.from_numpy(s)).numpy() for s in specs]
        parameters = [*self.object_decoder.parameters(), *self.unet.parameters()]
        optimiser = torch.optim.Adam(parameters, lr=p.learning_rate)
        self.object_decoder.train()
        self.unet.train()
        history: dict[str, list[float]] = {"reconstruction": [], "focal": []}
        qt, qb = self.vqvae.quantizer_top, self.vqvae.quantizer_bottom
        for _ in progress_bar(range(p.steps), desc=f"AudDSR {self.machine_type or ''}", enabled=progress):
            x = torch.from_numpy(random_crops(scaled, p.crop_frames, p.batch_size, rng))
            masks, strengths, levels = self._training_masks(p.batch_size, tuple(x.shape[2:]), rng)
            with torch.no_grad():
                codes = self.vqvae.encode(x)
                top, bottom, changed = perturb_codes(self.vqvae, codes, masks, strengths, rng, levels)
                general = self.vqvae.decode(top, bottom)
            restricted_top, restricted_bottom, restored = self.object_decoder(top, bottom, qt, qb)
            reconstruction = (
                torch.nn.functional.mse_loss(restored, x)
                + torch.nn.functional.mse_loss(restricted_top, codes.top)
                + torch.nn.functional.mse_loss(restricted_bottom, codes.bottom)
            )
            logits = self.unet(torch.cat([general, restored.detach()], dim=1))
            target = torch.nn.functional.avg_pool2d(changed[:, None].float(), MAP_FACTOR)  # exact: cells are 4-aligned
            focal = focal_loss(logits, target, p.focal_gamma)
            loss = reconstruction + focal
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            history["reconstruction"].append(reconstruction.item())
            history["focal"].append(focal.item())
        return history

    # -- scoring ------------------------------------------------------------
    def anomaly_maps(self, specs: list[np.ndarray]) -> list[np.ndarray]:
        """Sigmoid anomaly maps (n_mels/4, ceil(frames/4)) of prepared log-mels (`_prepare`);
        equal-length clips run as one batch."""
        maps: list[np.ndarray] = []
        qt, qb = self.vqvae.quantizer_top, self.vqvae.quantizer_bottom
        with torch_threads(self.params.num_threads), torch.no_grad():
            i = 0
            while i < len(specs):
                j = i + 1
                while j < len(specs) and j - i < LOAD_CHUNK and specs[j].shape == specs[i].shape:
                    j += 1
                frames = specs[i].shape[1]
                extra = (-frames) % PAD_MULTIPLE
                batch = np.stack([np.pad(s, ((0, 0), (0, extra)), mode="edge") for s in specs[i:j]]).astype(np.float32)
                x = self.vqvae.standardise(torch.from_numpy(batch))[:, None]
                codes = self.vqvae.encode(x)
                general = self.vqvae.decode(codes.top, codes.bottom)
                _, _, restored = self.object_decoder(codes.top, codes.bottom, qt, qb)
                logits = self.unet(torch.cat([general, restored], dim=1))
                # cells of the map that lie over real frames (the padding is edge copies)
                maps.extend(torch.sigmoid(logits[:, 0, :, : -(-frames // MAP_FACTOR)]).numpy())
                i = j
        return maps

    def _clip_score(self, anomaly_map: np.ndarray, kind: str | None = None, top_k_percent: float | None = None,
                    r: float | None = None) -> float:
        kind = kind or self.params.score
        if kind == "mean":  # each frame's mean over the mel rows, pooled over time with GWRP (r 1: the map's mean)
            return float(gwrp(anomaly_map.mean(axis=0), self.time_r if r is None else r))
        percent = top_k_percent if top_k_percent is not None else self.params.top_k_percent
        k = max(1, int(round(anomaly_map.size * percent / 100)))
        return float(np.partition(anomaly_map.ravel(), -k)[-k:].mean())

    def _checked(self, specs: list[np.ndarray]) -> list[np.ndarray]:
        for i, spec in enumerate(specs):
            if spec.ndim != 2 or spec.shape[0] != self.features.n_mels:
                raise DetectorError(f"clip {i}: expected a ({self.features.n_mels}, frames) log-mel, got {spec.shape}")
            self._check_spec(spec, f"clip {i}")
        return [self._prepare(s) for s in specs]

    def _scores_of_prepared(self, specs: list[np.ndarray]) -> np.ndarray:
        return np.asarray([self._clip_score(m) for m in self.anomaly_maps(specs)], dtype=np.float64)

    def candidate_scores(self, waveforms, records, rs) -> dict[float, np.ndarray]:
        maps = self.anomaly_maps(self._checked(self.extractor.batch(list(waveforms))))
        return {float(r): np.asarray([self._clip_score(m, r=r) for m in maps], dtype=np.float64) for r in rs}

    def score_spectrograms(self, specs: list[np.ndarray]) -> np.ndarray:
        """Clip scores of log-mels (n_mels, frames) in dB, as the extractor gives them."""
        return self._scores_of_prepared(self._checked(specs))

    def score_variants(self, specs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Several clip scores from one pass (benchmarks): mean, max, and top 1/5/10 % means of the map."""
        maps = self.anomaly_maps(self._checked(specs))
        out = {"mean": [self._clip_score(m, "mean") for m in maps], "max": [float(m.max()) for m in maps]}
        for percent in (1, 5, 10):
            out[f"top{percent}"] = [self._clip_score(m, "top_k_mean", percent) for m in maps]
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

    def score_waveform(self, waveform: np.ndarray, record: ClipRecord | None = None) -> float:
        return float(self.score_waveforms([waveform])[0])

    def score_waveforms(self, waveforms: list[np.ndarray]) -> np.ndarray:
        return self.score_spectrograms(self.extractor.batch(waveforms))

    def score(self, manifest: Manifest, progress: bool = True) -> dict[str, float]:
        scores: dict[str, float] = {}
        for start in progress_bar(range(0, len(manifest.records), LOAD_CHUNK), desc="scoring", enabled=progress):
            chunk = manifest.records[start : start + LOAD_CHUNK]
            specs = self._load_specs(chunk, False, "scoring")
            scores.update({r.name: float(s) for r, s in zip(chunk, self.score_spectrograms(specs))})
        return scores

    # -- persistence --------------------------------------------------------
    def _save_weights(self, directory: Path) -> None:
        state = {
            "vqvae": self.vqvae.state_dict(),
            "object_decoder": self.object_decoder.state_dict(),
            "unet": self.unet.state_dict(),
        }
        torch.save(state, directory / WEIGHTS_FILE)

    def _load_weights(self, directory: Path) -> None:
        try:
            state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            self.vqvae.load_state_dict(state["vqvae"])
            self.object_decoder.load_state_dict(state["object_decoder"])
            self.unet.load_state_dict(state["unet"])
        except Exception as err:  # missing, truncated or foreign files: one clear error, whatever torch raises
            raise DetectorError(f"cannot load auddsr weights from {directory}: {err}") from None
        self._eval()
