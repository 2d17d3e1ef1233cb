"""Training mixtures made on the fly from the supplemental clean-machine and noise-only clips.

Every mixture: a random clean segment of machine m, a random noise segment of the same
machine type's noise folder, the noise scaled to an SNR drawn from `snr_db`, then both
scaled by one gain drawn from `gain_db`. The references are the scaled clean and noise,
so mixture == machine + noise exactly.

Batch k is a pure function of (seed, k): a resumed run draws the same batches as an
uninterrupted one without saving any data-loader state.

Clips shorter than a segment are tiled (wrapped around) up to the segment length rather
than skipped or zero-padded: a stationary machine or background loops cleanly and the
mixture keeps its SNR over the whole segment. Clips that cannot be read are skipped
and listed in `MixtureSource.skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asdflow.config import SeparationConfig
from asdflow.data.audio import load_audio
from asdflow.data.manifest import Manifest, ManifestProblem
from asdflow.errors import AudioError, DataError

EPS = 1e-10


def mean_power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float, gain: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mixture, machine reference, noise reference) with 10*log10(P_machine / P_noise) == snr_db.

    A silent clean segment leaves the noise unscaled (no SNR is defined); a silent noise
    segment stays silent.
    """
    p_clean, p_noise = mean_power(clean), mean_power(noise)
    scale = np.sqrt(p_clean / (p_noise * 10 ** (snr_db / 10))) if p_clean > EPS and p_noise > EPS else 1.0
    machine = (clean * gain).astype(np.float32)
    background = (noise * scale * gain).astype(np.float32)
    return machine + background, machine, background


def fit_length(wav: np.ndarray, length: int) -> np.ndarray:
    """Tile a clip shorter than `length` (see module docstring); longer clips are returned as they are."""
    if len(wav) >= length:
        return wav
    return np.resize(wav, length) if len(wav) else np.zeros(length, dtype=np.float32)


def random_segment(wav: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    wav = fit_length(wav, length)
    start = int(rng.integers(0, len(wav) - length + 1))
    return wav[start : start + length]


@dataclass
class MixtureSource:
    """The clean and noise waveforms per machine type, loaded once."""

    clean: dict[str, list[np.ndarray]]
    noise: dict[str, list[np.ndarray]]
    config: SeparationConfig
    skipped: list[ManifestProblem] = field(default_factory=list)

    @property
    def machine_types(self) -> list[str]:
        return sorted(self.clean)

    @property
    def segment_length(self) -> int:
        return int(round(self.config.segment_seconds * self.config.sample_rate))

    def batch(self, step: int, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mixtures [B, T] and references [B, 2, T] (machine, noise) of training step `step`."""
        rng = np.random.default_rng([self.config.seed, step])
        n = batch_size or self.config.batch_size
        length = self.segment_length
        mixtures = np.empty((n, length), dtype=np.float32)
        references = np.empty((n, 2, length), dtype=np.float32)
        for i in range(n):
            machine_type = self.machine_types[int(rng.integers(len(self.machine_types)))]
            clean = self.clean[machine_type][int(rng.integers(len(self.clean[machine_type])))]
            noise = self.noise[machine_type][int(rng.integers(len(self.noise[machine_type])))]
            snr = float(rng.uniform(*self.config.snr_db))
            gain = float(10 ** (rng.uniform(*self.config.gain_db) / 20))
            mixtures[i], references[i, 0], references[i, 1] = mix_at_snr(
                random_segment(clean, length, rng), random_segment(noise, length, rng), snr, gain
            )
        return mixtures, references


def supplemental_folder(manifest: Manifest, machine_type: str) -> Path:
    return Path(manifest.root) / machine_type / "supplemental"


def check_supplemental(manifest: Manifest, machine_types: list[str] | None = None) -> list[str]:
    """The machine types to train on; DataError naming the machine type and folder when clean or noise clips are missing."""
    supplemental = [r for r in manifest.records if r.split == "supplemental"]
    wanted = machine_types or sorted({r.machine_type for r in manifest.records})
    if not wanted:
        raise DataError(f"{manifest.root}: the manifest holds no clip")
    for machine_type in wanted:
        kinds = {r.supplemental_kind for r in supplemental if r.machine_type == machine_type}
        missing = [k for k in ("clean", "noise") if k not in kinds]
        if missing:
            raise DataError(
                f"machine type {machine_type!r}: no {' and no '.join(missing)} clips in "
                f"{supplemental_folder(manifest, machine_type)} (separation training needs "
                "section_XX_*_supplemental_clean_* and section_XX_*_supplemental_noise_* files)"
            )
    return list(wanted)


def load_mixture_source(manifest: Manifest, config: SeparationConfig, machine_types: list[str] | None = None) -> MixtureSource:
    """Load every supplemental clean/noise clip of the machine types (all in the manifest by default)."""
    wanted = check_supplemental(manifest, machine_types)
    clean: dict[str, list[np.ndarray]] = {m: [] for m in wanted}
    noise: dict[str, list[np.ndarray]] = {m: [] for m in wanted}
    skipped: list[ManifestProblem] = []
    for record in manifest.records:
        if record.split != "supplemental" or record.machine_type not in clean:
            continue
        try:
            wav = load_audio(record.path, target_sr=config.sample_rate)
        except AudioError as err:
            skipped.append(ManifestProblem(path=record.path, reason=f"unreadable, skipped: {err}"))
            continue
        (clean if record.supplemental_kind == "clean" else noise)[record.machine_type].append(wav)
    for machine_type in wanted:
        for kind, pool in (("clean", clean), ("noise", noise)):
            if not pool[machine_type]:
                raise DataError(
                    f"machine type {machine_type!r}: no readable {kind} clip in {supplemental_folder(manifest, machine_type)}"
                )
    return MixtureSource(clean=clean, noise=noise, config=config, skipped=skipped)
