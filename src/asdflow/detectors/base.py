"""The one detector interface every family implements.

A detector is trained per machine type on normal training clips, scores clips
(higher = more anomalous), decides with a threshold fitted to its training
scores, and saves everything it needs (weights, config, threshold, feature
settings) into a directory, so that the registry and the server load any
family the same way: `load_detector(directory)`.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from asdflow.config import DetectorConfig, FeatureConfig
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.errors import DetectorError

DETECTOR_FILE = "detector.json"

# family name -> "module:Class"; imported lazily so a family's heavy deps load only when used
_FAMILIES: dict[str, str] = {
    "baseline_ae": "asdflow.detectors.baseline_ae.detector:BaselineAEDetector",
    "conditional_ae": "asdflow.detectors.conditional_ae.detector:ConditionalAEDetector",
    "auddsr": "asdflow.detectors.auddsr.detector:AudDSRDetector",
    "discriminator": "asdflow.detectors.discriminator.detector:DiscriminatorDetector",
    "twfr": "asdflow.detectors.twfr.detector:TWFRDetector",
}


def register_family(name: str, target: str) -> None:
    _FAMILIES[name] = target


def available_families() -> list[str]:
    return sorted(_FAMILIES)


def _family_class(name: str) -> type["Detector"]:
    if name not in _FAMILIES:
        raise DetectorError(f"unknown detector family {name!r}: available {', '.join(available_families())}")
    module, cls = _FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


class Detector(ABC):
    family: ClassVar[str]

    def __init__(self, config: DetectorConfig, features: FeatureConfig, seed: int = 0):
        self.config = config
        self.features = features
        self.seed = seed
        self.machine_type: str | None = None
        self.threshold: float | None = None
        self.fit_info: dict[str, Any] = {}
        # GWRP r of the frame-based families' time pooling (chosen at fit; 1 = the mean)
        self.time_r: float = 1.0
        self._extractor = None

    @property
    def extractor(self):
        """The log-mel extractor of `features`, built on first use (torchaudio's import is slow)."""
        if self._extractor is None:
            from asdflow.features.logmel import LogMelExtractor

            self._extractor = LogMelExtractor(self.features)
        return self._extractor

    def candidate_scores(
        self, waveforms: list[np.ndarray], records: list[ClipRecord | None], rs: list[float]
    ) -> dict[float, np.ndarray]:
        """r -> clip scores under each time pooling r (the frame-based families; the label-free selection)."""
        raise DetectorError(f"{self.family} has no frame scores to pool over time")

    # -- training -----------------------------------------------------------
    @abstractmethod
    def fit(self, manifest: Manifest, progress: bool = True) -> dict[str, Any]:
        """Train on the normal training clips of one machine type; set `threshold`.

        Returns a summary (losses, counts, seconds) that is also kept in `fit_info`.
        """

    # -- scoring ------------------------------------------------------------
    @abstractmethod
    def score_waveform(self, waveform: np.ndarray, record: ClipRecord | None = None) -> float:
        """Anomaly score of one mono waveform at `features.sample_rate` (higher = more anomalous).

        `record` carries the domain and attributes where a family uses them.
        """

    def score_waveforms(self, waveforms: list[np.ndarray]) -> np.ndarray:
        """Scores of several waveforms at once; families override to batch."""
        return np.asarray([self.score_waveform(w) for w in waveforms], dtype=np.float64)

    def score(self, manifest: Manifest, progress: bool = True) -> dict[str, float]:
        """name -> score for every clip in the manifest."""
        from asdflow.data.audio import load_audio
        from asdflow.progress import progress_bar

        scores: dict[str, float] = {}
        for record in progress_bar(manifest.records, desc="scoring", enabled=progress):
            waveform = load_audio(record.path, self.features.sample_rate)
            scores[record.name] = float(self.score_waveform(waveform, record))
        return scores

    def decide(self, scores: np.ndarray | float) -> np.ndarray | bool:
        """1/True = anomalous: score above the fitted threshold."""
        if self.threshold is None:
            raise DetectorError(f"{self.family} detector has no threshold: fit or load it first")
        return np.asarray(scores) > self.threshold

    # -- persistence --------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "family": self.family,
            "machine_type": self.machine_type,
            "threshold": self.threshold,
            "time_pooling_r": self.time_r,
            "seed": self.seed,
            "detector": self.config.model_dump(),
            "features": self.features.model_dump(),
            "fit_info": self.fit_info,
        }
        self._save_weights(directory)
        (directory / DETECTOR_FILE).write_text(json.dumps(meta, indent=2, default=float))
        return directory

    @abstractmethod
    def _save_weights(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_weights(self, directory: Path) -> None: ...


def training_records(manifest: Manifest) -> list[ClipRecord]:
    """Normal training clips of exactly one machine type (what every family's `fit` trains on)."""
    records = [r for r in manifest.records if r.split == "train" and r.label in ("normal", None)]
    if not records:
        raise DetectorError(f"no normal training clips in the manifest of {manifest.root or 'the dataset'}")
    machine_types = sorted({r.machine_type for r in records})
    if len(machine_types) > 1:
        raise DetectorError(f"a detector trains on one machine type, the manifest has {', '.join(machine_types)}")
    return records


def make_detector(config: DetectorConfig, features: FeatureConfig, seed: int = 0) -> Detector:
    return _family_class(config.family)(config, features, seed=seed)


def load_detector(directory: str | Path) -> Detector:
    """Load any family from the directory `Detector.save` wrote."""
    directory = Path(directory)
    meta_file = directory / DETECTOR_FILE
    if not meta_file.exists():
        raise DetectorError(f"no detector in {directory}: {DETECTOR_FILE} is missing")
    try:
        meta = json.loads(meta_file.read_text())
        detector = make_detector(
            DetectorConfig.model_validate(meta["detector"]),
            FeatureConfig.model_validate(meta["features"]),
            seed=meta.get("seed", 0),
        )
    except (KeyError, ValueError) as err:
        raise DetectorError(f"unreadable {meta_file}: {err}") from None
    detector.machine_type = meta.get("machine_type")
    detector.threshold = meta.get("threshold")
    detector.time_r = float(meta.get("time_pooling_r", 1.0))  # saved before pooling was chosen: the mean
    detector.fit_info = meta.get("fit_info", {})
    detector._load_weights(directory)
    return detector
