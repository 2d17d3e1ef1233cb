"""`simulate_anomalies`: write simulated anomalous spectrograms of one machine type to a folder.

Methods are pluggable: `METHODS` maps a name to "module:builder" (imported lazily). A
builder has the signature

    build(train_images: np.ndarray, config: SimulationConfig, seed: int, progress: bool) -> simulator

where `train_images` are normalised normal patches (N, n_mels, frames) and the simulator has

    simulator.simulate(images: np.ndarray, masks: np.ndarray[bool], rng: np.random.Generator) -> np.ndarray

returning the anomalous images (same shape, normalised, already overlaid inside the masks).
A new method (e.g. AudDSR's codebook sampling) adds ONE line to METHODS.

Output folder:
    normal/NNNN.npy      the normal patch (dB log-mel, n_mels x frames)
    simulated/NNNN.npy   the simulated anomaly (dB)
    masks/NNNN.npy       the boolean mask
    normalization.npz    per-mel-bin mean/std of the machine type's normal training frames
    metadata.json        method, seed, settings, and per sample: source clip, start frame, mask kind, coverage
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from asdflow.config import AsdflowConfig, FeatureConfig
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.errors import ConfigError, DataError
from asdflow.simulation.config import MaskConfig, PatchConfig, SimulationConfig
from asdflow.simulation.masks import sample_mask
from asdflow.simulation.spectrogram import SpectrogramNormalizer, cut_patches, load_logmels, patch_starts

METADATA_FILE = "metadata.json"

# method name -> "module:builder"
METHODS: dict[str, str] = {
    "latent": "asdflow.simulation.latent_perturbation:build_latent_simulator",
    "codebook": "asdflow.simulation.codebook_sampling:build_codebook_simulator",
}


class AnomalySimulator(Protocol):
    def simulate(self, images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


def available_methods() -> list[str]:
    return sorted(METHODS)


def build_simulator(method: str, train_images: np.ndarray, config: SimulationConfig, seed: int = 0,
                    progress: bool = False) -> AnomalySimulator:
    if method not in METHODS:
        raise ConfigError(f"unknown simulation method {method!r}: available {', '.join(available_methods())}")
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)(train_images, config, seed, progress)


def sample_masks(n: int, shape: tuple[int, int], masks: MaskConfig, rng: np.random.Generator
                 ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """n masks (n, *shape), kinds cycling through the configured ones, coverage drawn uniformly."""
    out = np.zeros((n, *shape), dtype=bool)
    info = []
    for i in range(n):
        kind = masks.kinds[i % len(masks.kinds)]
        coverage = float(rng.uniform(*masks.coverage))
        out[i] = sample_mask(shape, kind, coverage, rng)
        info.append({"mask_kind": kind, "coverage": coverage, "mask_fraction": float(out[i].mean())})
    return out, info


def normal_training_records(manifest: Manifest, machine_type: str) -> list[ClipRecord]:
    records = [r for r in manifest.records
               if r.machine_type == machine_type and r.split == "train" and r.label in ("normal", None)]
    if not records:
        raise DataError(f"no normal training clips of {machine_type!r} in the manifest of "
                        f"{manifest.root or 'the dataset'}")
    return records


def normal_patches(
    records: list[ClipRecord], features: FeatureConfig, patches: PatchConfig, progress: bool = False,
    normalizer: SpectrogramNormalizer | None = None,
) -> tuple[SpectrogramNormalizer, np.ndarray, list[tuple[int, int]]]:
    """(normaliser fitted on these clips unless given, normalised patches, (record index, start frame) per patch)."""
    images = load_logmels(records, features, patches.crop_seconds, progress)
    normalizer = normalizer or SpectrogramNormalizer().fit(images)
    cut, where = [], []
    for i, image in enumerate(images):
        cut.append(cut_patches(normalizer.normalize(image), patches.frames, patches.hop))
        starts = patch_starts(max(image.shape[1], patches.frames), patches.frames, patches.hop)
        where.extend((i, s) for s in starts)
    return normalizer, np.concatenate(cut), where


def simulate_anomalies(
    manifest: Manifest, machine_type: str, config: AsdflowConfig, out_dir: str | Path, n: int | None = None,
    method: str | None = None, progress: bool | None = None,
) -> Path:
    """Train the method on the machine type's normal training clips, simulate n anomalies, write them.

    Deterministic given `config.simulation.seed`. Returns out_dir.
    """
    from asdflow.torch_threads import torch_threads

    sim = config.simulation
    method = method or sim.method
    n = n or sim.n_samples
    show = config.progress if progress is None else progress
    out = Path(out_dir)
    if method not in METHODS:  # before any audio is read
        raise ConfigError(f"unknown simulation method {method!r}: available {', '.join(available_methods())}")
    records = normal_training_records(manifest, machine_type)
    normalizer, images, where = normal_patches(records, config.features, sim.patches, show)
    with torch_threads(sim.num_threads):
        simulator = build_simulator(method, images, sim, sim.seed, show)
        rng = np.random.default_rng(sim.seed)
        chosen = rng.choice(len(images), size=n, replace=n > len(images))
        masks, mask_info = sample_masks(n, images.shape[1:], sim.masks, rng)
        simulated = simulator.simulate(images[chosen], masks, rng)
    if not np.all(np.isfinite(simulated)):
        raise DataError(f"simulation method {method!r} produced non-finite values for {machine_type}")

    for sub in ("normal", "simulated", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    samples = []
    normal_db, simulated_db = normalizer.denormalize(images[chosen]), normalizer.denormalize(simulated)
    for k, (index, info) in enumerate(zip(chosen, mask_info)):
        stem = f"{k:04d}"
        np.save(out / "normal" / f"{stem}.npy", normal_db[k])
        np.save(out / "simulated" / f"{stem}.npy", simulated_db[k])
        np.save(out / "masks" / f"{stem}.npy", masks[k])
        record_index, start = where[int(index)]
        samples.append({"id": stem, "clip": records[record_index].name, "start_frame": int(start), **info,
                        "mean_abs_change_db": float(np.abs(simulated_db[k] - normal_db[k]).mean())})
    normalizer.save(out / "normalization.npz")
    metadata = {
        "machine_type": machine_type, "method": method, "seed": sim.seed, "n": n,
        "n_training_clips": len(records), "n_training_patches": int(len(images)),
        "shape": list(images.shape[1:]), "simulation": sim.model_dump(), "features": config.features.model_dump(),
        "samples": samples,
    }
    if hasattr(simulator, "radii"):
        metadata["latent_radii"] = list(simulator.radii)
        metadata["latent_spread"] = simulator.spread
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return out


def load_simulation(out_dir: str | Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """(metadata, normal dB patches, simulated dB patches, masks) of a folder simulate_anomalies wrote."""
    out = Path(out_dir)
    meta_file = out / METADATA_FILE
    if not meta_file.exists():
        raise DataError(f"no simulation in {out}: {METADATA_FILE} is missing")
    meta = json.loads(meta_file.read_text())
    ids = [s["id"] for s in meta["samples"]]
    try:
        arrays = [np.stack([np.load(out / sub / f"{i}.npy") for i in ids]) for sub in ("normal", "simulated", "masks")]
    except (OSError, ValueError) as err:
        raise DataError(f"incomplete simulation in {out}: {err}") from None
    return meta, arrays[0], arrays[1], arrays[2]
