"""Shared, session-scoped material of the registry tests: a tiny synthetic dataset, two real
baseline autoencoders of measurably different quality, and an empty migrated MLflow store.

- `good`: trained on the fan's own normal training clips;
- `weak`: trained on the pump's normal training clips, relabelled as fan (a challenger
  trained on the wrong machine's data).
Their quality is measured here, outside MLflow (detector.score + evaluate_scores), and
the tests arrange champion and challenger from these measurements, never from assumptions.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from asdflow.config import AsdflowConfig, load_config
from asdflow.data.manifest import Manifest

MACHINE = "fan"
MIN_GAP = 0.05  # the two detectors must differ at least this much in official score


@dataclass(frozen=True)
class TrainedDetector:
    directory: Path
    scores: dict[str, float]  # fan test clip name -> score, from the detector itself
    official: float
    auc_source: float
    auc_target: float
    pauc: float


@dataclass(frozen=True)
class RegistryMaterial:
    manifest: Manifest  # every clip, both machine types
    fan: Manifest  # the fan's clips
    good: TrainedDetector
    weak: TrainedDetector


@pytest.fixture(scope="session")
def tiny_config() -> AsdflowConfig:
    # the registry's material is two baseline autoencoders; one family per run, as these tests assume
    return load_config(profile="tiny", overrides={"detector": {"family": "baseline_ae", "families": None}})


@pytest.fixture(scope="session")
def material(tmp_path_factory, tiny_config) -> RegistryMaterial:
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.data.synth import synthesize_dataset
    from asdflow.detectors.base import make_detector
    from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest

    root = tmp_path_factory.mktemp("registry_data")
    synth = tiny_config.synth.model_copy(update={"machine_types": ["fan", "pump"]})
    synthesize_dataset(synth, root / "data", progress=False, workers=1)
    manifest = build_manifest(root / "data", progress=False)
    fan = manifest.select(machine_type=MACHINE)
    fan_test = fan.select(split="test")
    truth = ground_truth_from_manifest(fan_test)

    pump_train = manifest.select(machine_type="pump", split="train")
    relabelled = Manifest(root=pump_train.root,
                          records=[r.model_copy(update={"machine_type": MACHINE}) for r in pump_train.records])
    trained = {}
    for key, train in (("good", fan.select(split="train")), ("weak", relabelled)):
        detector = make_detector(tiny_config.detector, tiny_config.features, seed=0)
        detector.fit(train, progress=False)
        directory = detector.save(root / f"detector_{key}")
        scores = detector.score(fan_test, progress=False)
        summary = evaluate_scores(truth, scores).overall
        trained[key] = TrainedDetector(directory, scores, summary.official, summary.auc_source,
                                       summary.auc_target, summary.pauc)
    good, weak = trained["good"], trained["weak"]
    # the precondition every champion/challenger test relies on, measured, not assumed
    assert good.official - weak.official >= MIN_GAP, (
        f"the tiny detectors are too close to tell apart: good {good.official:.4f}, weak {weak.official:.4f}"
    )
    return RegistryMaterial(manifest=manifest, fan=fan, good=good, weak=weak)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite database with every table created once (migrations take seconds);
    each test works on its own copy."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("store_template")
    db = folder / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{db}", str(folder / "unused_artifacts"))
    store.engine.dispose()
    return db


@pytest.fixture
def sqlite_config(tmp_path, tiny_config, empty_store) -> AsdflowConfig:
    """The tiny config with its tracking store in this test's own folder (a fresh copy of the empty store)."""
    (tmp_path / "mlruns").mkdir()
    shutil.copy(empty_store, tmp_path / "mlruns" / "mlflow.db")
    tracking = tiny_config.tracking.model_copy(update={
        "tracking_uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        "artifact_location": str(tmp_path / "mlruns" / "artifacts"),
    })
    return tiny_config.model_copy(update={"tracking": tracking})
