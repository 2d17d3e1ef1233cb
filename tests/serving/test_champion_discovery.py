"""The server's machine types come from the registry: every asd-* model with a @champion, picked up
as it appears; `serving.machine_types` only narrows. A real SQLite MLflow registry, real detectors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asdflow.config import load_config

from serving.champions import ChampionStore


@pytest.fixture(scope="module")
def detectors(tmp_path_factory, tiny_manifest, tiny_config) -> dict[str, Path]:
    from asdflow.jobs import train_detector

    work = tmp_path_factory.mktemp("discovery_detectors")
    config = tiny_config.model_copy(update={"detector": tiny_config.detector.model_copy(update={"family": "twfr"})})
    return {mt: Path(train_detector(tiny_manifest, mt, config, work / mt).detector_dir) for mt in ("fan", "pump")}


def _config(tmp_path, **serving):
    return load_config(profile="tiny", overrides={
        "progress": False, "serving": serving,
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_location": str(tmp_path / "a")},
    })


def test_every_champion_is_served_and_a_later_one_is_picked_up(tmp_path, detectors):
    from asdflow.registry.models import promote, register_detector

    config = _config(tmp_path)
    store = ChampionStore(config)
    store.refresh()
    assert store.machine_types == [] and not store.ready()
    assert "does not exist" in store.status()["registry"]["error"]  # nothing registered yet: no store file

    fan = register_detector(detectors["fan"], "fan", config)
    register_detector(detectors["pump"], "pump", config)  # a challenger only: not served
    store.refresh()
    assert store.machine_types == [] and not store.ready()
    assert "has a @champion yet" in store.status()["error"] and store.status()["registry"]["ok"]

    promote("fan", fan.version, None, config)
    assert store.refresh() == {"fan": f"loaded {fan.version}"}
    assert store.machine_types == ["fan"] and store.ready()

    pump = register_detector(detectors["pump"], "pump", config)
    promote("pump", pump.version, None, config)
    assert store.refresh() == {"fan": "unchanged", "pump": f"loaded {pump.version}"}
    assert store.ready() and set(store.status()["models"]) == {"fan", "pump"}


def test_serving_machine_types_narrows_and_waits_for_each_listed_champion(tmp_path, detectors):
    from asdflow.registry.models import promote, register_detector

    config = _config(tmp_path, machine_types=["pump"])
    fan = register_detector(detectors["fan"], "fan", config)
    promote("fan", fan.version, None, config)
    store = ChampionStore(config)
    assert store.refresh().keys() == {"pump"} and not store.ready()
    assert "asd-pump has no @champion" in store.status()["models"]["pump"]["error"]
    pump = register_detector(detectors["pump"], "pump", config)
    promote("pump", pump.version, None, config)
    store.refresh()
    assert store.machine_types == ["pump"] and store.ready() and store.get("fan") is None


def test_a_missing_or_replaced_registry_file_is_said_never_recreated(tmp_path, detectors):
    from asdflow.registry.models import promote, register_detector

    config = _config(tmp_path)
    fan = register_detector(detectors["fan"], "fan", config)
    promote("fan", fan.version, None, config)
    seen: list[bool] = []
    store = ChampionStore(config, on_registry_check=lambda ok, at: seen.append(ok))
    assert store.refresh() == {"fan": f"loaded {fan.version}"}
    assert store.status()["registry"]["ok"] and seen[-1] is True

    db = tmp_path / "mlflow.db"
    moved = db.rename(tmp_path / "moved.db")
    outcome = store.refresh()
    assert "does not exist" in outcome["fan"] and not db.exists(), "no empty registry created"
    status = store.status()
    assert status["registry"]["ok"] is False and "mlflow.db does not exist" in status["registry"]["error"]
    assert str(tmp_path) not in str(status) and seen[-1] is False
    assert store.ready() and store.get("fan").version == fan.version  # still serving what is loaded

    shutil.copyfile(moved, db)  # a new file (another inode) in its place: reopened, healthy again
    assert store.refresh() == {"fan": "unchanged"} and store.status()["registry"]["ok"]


def test_a_champion_that_does_not_load_at_start_up_falls_back_to_the_previous_one(tmp_path, detectors):
    from asdflow.registry.models import promote, register_detector

    config = _config(tmp_path)
    good = register_detector(detectors["fan"], "fan", config)
    promote("fan", good.version, None, config)
    broken_dir = tmp_path / "broken"
    shutil.copytree(detectors["fan"], broken_dir)
    for state in (p for p in broken_dir.iterdir() if p.suffix != ".json"):
        state.write_bytes(b"not a detector")
    broken = register_detector(broken_dir, "fan", config)
    promote("fan", broken.version, good.version, config)

    store = ChampionStore(config)  # a server starting now
    store.refresh()
    assert store.ready() and store.ready_by_machine_type() == {"fan": True}
    assert store.get("fan").version == good.version
    entry = store.status()["models"]["fan"]
    assert entry["fallback_from"] == broken.version and "an earlier champion" in entry["error"]
