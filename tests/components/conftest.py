"""The components called through `.python_func` (in this process), one stage after the other.

Each stage is a session fixture fed by the previous one's artifacts, so a test
checks one component while the chain (fetch -> ... -> promote, fan) is built once:
tiny synthetic data (the suite's `tiny_dataset`) in a project folder, and a
SQLite MLflow store of its own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from kfp.dsl import Artifact, Dataset, Metrics, Model

import components
from asdflow.pipeline_ops import encode_overrides

MACHINE = "fan"


@dataclass(frozen=True)
class Settings:
    project: Path  # holds data/ (the config's data.data_dir)
    work: Path  # artifacts go under it
    profile: str
    overrides: str  # config_overrides: tracking store, no progress bars

    def kwargs(self) -> dict[str, str]:
        return {"config_profile": self.profile, "config_overrides": self.overrides}

    def with_overrides(self, **extra) -> dict[str, str]:
        from asdflow.config import deep_merge
        from asdflow.pipeline_ops import decode_overrides

        return {"config_profile": self.profile,
                "config_overrides": encode_overrides(deep_merge(decode_overrides(self.overrides), extra))}


def artifact(kind, path: Path):
    """An artifact object as KFP hands it to the function: `.path` is where it reads or writes."""
    return kind(name=path.name, uri=str(path))


@pytest.fixture(scope="session")
def settings(tmp_path_factory, tiny_dataset) -> Settings:
    root = tmp_path_factory.mktemp("components")
    shutil.copytree(tiny_dataset, root / "project" / "data")
    store = root / "mlruns"
    overrides = {"progress": False, "tracking": {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}",
                                                 "artifact_location": str(store / "artifacts")},
                 "detector": {"family": "baseline_ae", "families": None}}  # the components' tests follow one family
    return Settings(project=root / "project", work=root / "artifacts", profile="tiny",
                    overrides=encode_overrides(overrides))


@pytest.fixture(scope="session")
def fetched(settings):
    data = artifact(Dataset, settings.work / "fetch" / "data")
    components.fetch_data.python_func(project=str(settings.project), data_version="workspace", data=data,
                                      **settings.kwargs())
    return data


@pytest.fixture(scope="session")
def validated(settings, fetched):
    manifest = artifact(Dataset, settings.work / "validate" / "manifest")
    report = artifact(Artifact, settings.work / "validate" / "report")
    components.validate_data.python_func(data=fetched, machine_type=MACHINE, manifest=manifest, report=report,
                                         **settings.kwargs())
    return manifest, report


@pytest.fixture(scope="session")
def trained(settings, fetched, validated):
    detector = artifact(Model, settings.work / "train" / "detector")
    components.train_detector.python_func(data=fetched, manifest=validated[0], machine_type=MACHINE,
                                          detector=detector, **settings.kwargs())
    return detector


@pytest.fixture(scope="session")
def scored(settings, fetched, validated, trained):
    scores = artifact(Dataset, settings.work / "score" / "scores")
    components.score_clips.python_func(data=fetched, detector=trained, manifest=validated[0], machine_type=MACHINE,
                                       scores=scores, **settings.kwargs())
    return scores


@pytest.fixture(scope="session")
def evaluated(settings, validated, scored):
    evaluation = artifact(Artifact, settings.work / "evaluate" / "evaluation")
    metrics = artifact(Metrics, settings.work / "evaluate" / "metrics")
    components.evaluate_scores.python_func(scores=scored, manifest=validated[0], evaluation=evaluation,
                                           metrics=metrics)
    return evaluation, metrics


@pytest.fixture(scope="session")
def registered(settings, validated, trained, scored, evaluated) -> str:
    return components.register_challenger.python_func(
        detector=trained, manifest=validated[0], scores=scored, evaluation=evaluated[0], machine_type=MACHINE,
        data_version="workspace", **settings.kwargs())


@pytest.fixture(scope="session")
def gated(settings, fetched, validated, registered):
    decision = artifact(Artifact, settings.work / "gate" / "decision")
    verdict = components.gate_challenger.python_func(data=fetched, manifest=validated[0], machine_type=MACHINE,
                                                     challenger_version=registered, decision=decision,
                                                     **settings.kwargs())
    return verdict, decision


@pytest.fixture(scope="session")
def promoted(settings, gated):
    promotion = artifact(Artifact, settings.work / "promote" / "promotion")
    version = components.promote_champion.python_func(decision=gated[1], promotion=promotion, **settings.kwargs())
    return version, promotion


@pytest.fixture(scope="session")
def registry(settings):
    """An MlflowClient on the components' store."""
    import mlflow

    from asdflow.pipeline_ops import component_config

    uri = component_config(settings.profile, settings.overrides).tracking.tracking_uri
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
