"""register_challenger, gate_challenger and promote_champion through .python_func on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import Artifact

import components
from asdflow.registry.models import ChampionChangedError

NAME = "asd-fan"


def test_register_logs_the_run_and_registers_the_challenger(registered, registry):
    assert registered == "1"
    version = registry.get_model_version_by_alias(NAME, "challenger")
    assert str(version.version) == "1"
    run = registry.get_run(version.run_id)
    assert run.data.tags["data_version"] == "workspace" and run.data.tags["machine_type"] == "fan"
    assert {"official", "fan.official", "fan.section_00.official", "fan.section_00.pauc"} <= set(run.data.metrics)
    assert run.data.params["detector.baseline_ae.epochs"] == "3"
    logged = {f.path for folder in ("plots", "submission") for f in registry.list_artifacts(run.info.run_id, folder)}
    assert {"plots/roc_fan.png", "plots/score_histogram_fan.png"} <= logged
    assert any(p.startswith("submission/anomaly_score_fan") for p in logged)


def test_gate_promotes_a_first_challenger_above_the_floor(gated):
    verdict, decision = gated
    record = json.loads((Path(decision.path) / "gate_decision.json").read_text())
    assert verdict == record["verdict"] == decision.metadata["verdict"] == "promote"
    assert record["champion"] is None and record["challenger"]["version"] == "1"
    assert record["challenger"]["official"] > 0.7


def test_promote_moves_the_champion_and_refuses_a_stale_decision(promoted, gated, registry, settings, tmp_path):
    version, promotion = promoted
    assert version == "1" and str(registry.get_model_version_by_alias(NAME, "champion").version) == "1"
    record = json.loads((Path(promotion.path) / "gate_decision.json").read_text())
    assert record["promotion"]["action"] == "promoted" and record["promotion"]["previous_champion"] is None
    # the same decision again: it was made when there was no champion; now there is one
    with pytest.raises(ChampionChangedError):
        components.promote_champion.python_func(decision=gated[1], promotion=Artifact(uri=str(tmp_path / "p")),
                                                **settings.kwargs())
    assert str(registry.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_gate_keeps_or_rejects_a_second_challenger(promoted, settings, fetched, validated, trained, scored,
                                                   evaluated, registry, tmp_path):
    second = components.register_challenger.python_func(
        detector=trained, manifest=validated[0], scores=scored, evaluation=evaluated[0], machine_type="fan",
        data_version="workspace", **settings.kwargs())
    assert second == "2"
    common = dict(data=fetched, manifest=validated[0], machine_type="fan", challenger_version=second)
    kept = Artifact(uri=str(tmp_path / "keep"))
    verdict = components.gate_challenger.python_func(decision=kept, **common,
                                                     **settings.with_overrides(gate={"min_improvement": 0.05}))
    record = json.loads((tmp_path / "keep" / "gate_decision.json").read_text())
    assert verdict == "keep" and record["champion"]["version"] == "1"
    # both re-scored in the same step, on the same clips, by the same weights
    assert record["champion"]["official"] == pytest.approx(record["challenger"]["official"])
    rejected = Artifact(uri=str(tmp_path / "reject"))
    verdict = components.gate_challenger.python_func(decision=rejected, **common,
                                                     **settings.with_overrides(gate={"absolute_floor": 1.01}))
    assert verdict == "reject"
    assert str(registry.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_chained_registers_hand_the_gate_every_family_of_the_run(promoted, settings, fetched, validated, trained,
                                                                 scored, evaluated, registry, tmp_path):
    """Several families in one run: each register step appends its version; the gate measures them all."""
    common = dict(detector=trained, manifest=validated[0], scores=scored, evaluation=evaluated[0], machine_type="fan",
                  data_version="workspace", **settings.kwargs())
    first = components.register_challenger.python_func(**common)
    both = components.register_challenger.python_func(registered_before=first, **common)
    assert both == f"{first},{int(first) + 1}"
    decision = Artifact(uri=str(tmp_path / "gate"))
    components.gate_challenger.python_func(decision=decision, data=fetched, manifest=validated[0], machine_type="fan",
                                           challenger_version=both, **settings.kwargs())
    record = json.loads((tmp_path / "gate" / "gate_decision.json").read_text())
    measured = [record["challenger"]["version"]] + [c["version"] for c in record["other_challengers"]]
    assert sorted(measured) == sorted(both.split(","))
