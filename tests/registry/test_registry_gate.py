"""The gate and promotion on a real SQLite MLflow registry, with real baseline autoencoders.

`material.good` and `material.weak` (conftest) are measured outside MLflow; every
scenario arranges champion and challenger from those measurements.
"""

from __future__ import annotations

import json
import math
import shutil
import sys

import mlflow
import pytest
from typer.testing import CliRunner

from asdflow.cli import main
from asdflow.cli_models import models_app
from asdflow.registry.gate import DECISION_FILE, GateDecision, apply_decision, run_gate
from asdflow.registry.models import (
    ChampionChangedError,
    RegistryError,
    compare,
    current_aliases,
    list_models,
    promote,
    register_detector,
    rollback,
)
from asdflow.registry.tracking import log_training_run

MACHINE = "fan"
NAME = "asd-fan"


def _register(detector, config, project_dir) -> str:
    return register_detector(detector.directory, MACHINE, config, project_dir=project_dir).version


def _gate(config, material, tmp_path, out="gate", **gate_settings) -> GateDecision:
    config = config.model_copy(update={"gate": config.gate.model_copy(update=gate_settings)})
    return run_gate(MACHINE, material.manifest, config, tmp_path / out, project_dir=tmp_path)


def _client(config):
    return mlflow.MlflowClient(config.tracking.tracking_uri, config.tracking.tracking_uri)


def test_first_challenger_is_promoted_above_the_floor_and_rejected_below(tmp_path, material, sqlite_config):
    good, weak = material.good, material.weak
    floor = (good.official + weak.official) / 2

    weak_version = _register(weak, sqlite_config, tmp_path)
    rejected = apply_decision(_gate(sqlite_config, material, tmp_path, "gate1", absolute_floor=floor), sqlite_config)
    assert rejected.verdict == "reject" and "below the absolute floor" in rejected.reason
    assert rejected.challenger.version == weak_version and rejected.champion is None
    assert rejected.challenger.official == pytest.approx(weak.official, abs=1e-6)
    assert current_aliases(MACHINE, sqlite_config, tmp_path)["champion"] is None

    good_version = _register(good, sqlite_config, tmp_path)
    decision = _gate(sqlite_config, material, tmp_path, "gate2", absolute_floor=floor)
    assert decision.verdict == "promote" and "no champion yet" in decision.reason
    apply_decision(decision, sqlite_config, tmp_path)
    assert decision.promotion is not None and decision.promotion.action == "promoted"
    assert current_aliases(MACHINE, sqlite_config, tmp_path) == {"champion": good_version, "challenger": good_version}
    assert _client(sqlite_config).get_model_version(NAME, good_version).tags["previous_champion"] == "none"

    record = json.loads((tmp_path / "gate2" / DECISION_FILE).read_text())
    assert record["verdict"] == "promote" and record["challenger"]["version"] == good_version
    assert record["metric"] == "official" and record["absolute_floor"] == pytest.approx(floor)
    assert record["promotion"]["version"] == good_version
    # the record also sits in the challenger's run
    run_id = decision.challenger.run_id
    logged = [f.path for f in _client(sqlite_config).list_artifacts(run_id, "gate")]
    assert logged == [f"gate/{DECISION_FILE}"]


def test_better_challenger_is_promoted_on_measured_not_stored_scores(tmp_path, material, sqlite_config):
    good, weak = material.good, material.weak
    champion = _register(weak, sqlite_config, tmp_path)
    promote(MACHINE, champion, expected_champion=None, config=sqlite_config, project_dir=tmp_path)
    # a stored score that flatters the champion must not matter: the gate re-measures it
    _client(sqlite_config).set_model_version_tag(NAME, champion, "official", "0.999")
    challenger = _register(good, sqlite_config, tmp_path)

    decision = _gate(sqlite_config, material, tmp_path, absolute_floor=0.0, min_improvement=0.01)
    assert decision.champion is not None and decision.champion.version == champion
    assert decision.champion.official == pytest.approx(weak.official, abs=1e-6)
    assert decision.challenger.official == pytest.approx(good.official, abs=1e-6)
    assert decision.improvement == pytest.approx(good.official - weak.official, abs=1e-6)
    assert decision.verdict == "promote" and decision.champion_version_seen == champion

    apply_decision(decision, sqlite_config, tmp_path)
    assert current_aliases(MACHINE, sqlite_config, tmp_path)["champion"] == challenger
    client = _client(sqlite_config)
    assert client.get_model_version(NAME, challenger).tags["previous_champion"] == champion
    assert client.get_registered_model(NAME).tags["previous_champion"] == champion
    assert client.get_model_version(NAME, challenger).tags["gate_verdict"] == "promote"


def test_worse_challenger_is_kept_out_and_min_improvement_holds(tmp_path, material, sqlite_config):
    good, weak = material.good, material.weak
    champion = _register(good, sqlite_config, tmp_path)
    promote(MACHINE, champion, expected_champion=None, config=sqlite_config, project_dir=tmp_path)
    _register(weak, sqlite_config, tmp_path)

    decision = apply_decision(_gate(sqlite_config, material, tmp_path, absolute_floor=0.0), sqlite_config, tmp_path)
    assert decision.verdict == "keep" and decision.promotion is None
    assert decision.champion.official > decision.challenger.official
    assert current_aliases(MACHINE, sqlite_config, tmp_path)["champion"] == champion

    # the reverse pair, but the required margin is larger than the measured gain: keep
    _register(good, sqlite_config, tmp_path)
    weak_champion = register_detector(weak.directory, MACHINE, sqlite_config, project_dir=tmp_path, alias=None).version
    promote(MACHINE, weak_champion, expected_champion=champion, config=sqlite_config, project_dir=tmp_path)
    margin = (good.official - weak.official) + 0.01
    decision = _gate(sqlite_config, material, tmp_path, "gate_margin", absolute_floor=0.0, min_improvement=margin)
    assert decision.verdict == "keep" and decision.improvement > 0
    assert f"minimum {margin:.4f}" in decision.reason
    assert current_aliases(MACHINE, sqlite_config, tmp_path)["champion"] == weak_champion


def test_promotion_is_refused_when_the_champion_moved_after_the_gate(tmp_path, material, sqlite_config):
    first = _register(material.weak, sqlite_config, tmp_path)
    promote(MACHINE, first, expected_champion=None, config=sqlite_config, project_dir=tmp_path)
    _register(material.good, sqlite_config, tmp_path)
    decision = _gate(sqlite_config, material, tmp_path, absolute_floor=0.0)
    assert decision.verdict == "promote" and decision.champion_version_seen == first

    # meanwhile another pipeline run promotes its own model
    other = register_detector(material.weak.directory, MACHINE, sqlite_config, project_dir=tmp_path, alias=None).version
    promote(MACHINE, other, expected_champion=first, config=sqlite_config, project_dir=tmp_path)

    with pytest.raises(ChampionChangedError, match=rf"is version {other}.*against version {first}"):
        apply_decision(decision, sqlite_config, tmp_path)
    assert current_aliases(MACHINE, sqlite_config, tmp_path)["champion"] == other


def test_rollback_walks_back_the_promotions(tmp_path, material, sqlite_config):
    v1 = _register(material.weak, sqlite_config, tmp_path)
    v2 = _register(material.good, sqlite_config, tmp_path)
    promote(MACHINE, v1, None, sqlite_config, tmp_path)
    promote(MACHINE, v2, v1, sqlite_config, tmp_path)

    listed = {v.version: v.aliases for v in list_models(MACHINE, sqlite_config, tmp_path)}
    assert listed == {v2: ["champion", "challenger"], v1: []}
    result = rollback(MACHINE, sqlite_config, tmp_path)
    assert (result.version, result.previous_champion, result.action) == (v1, v2, "rolled_back")
    assert current_aliases(MACHINE, sqlite_config, tmp_path)["champion"] == v1
    comparison = compare(MACHINE, sqlite_config, tmp_path)
    assert (comparison.champion.version, comparison.challenger.version) == (v1, v2)
    with pytest.raises(RegistryError, match="no recorded previous champion"):
        rollback(MACHINE, sqlite_config, tmp_path)


def test_models_cli_lists_compares_promotes_and_rolls_back(tmp_path, material, sqlite_config, monkeypatch, capsys):
    v1 = _register(material.weak, sqlite_config, tmp_path)  # no scores logged for it: shown as "-"
    good = material.good
    run = log_training_run(MACHINE, sqlite_config, scores=good.scores, eval_manifest=material.fan,
                           detector_dir=good.directory, project_dir=tmp_path)
    v2 = register_detector(good.directory, MACHINE, sqlite_config, run_id=run.run_id, project_dir=tmp_path).version
    config_file = tmp_path / "asdflow.yaml"
    config_file.write_text(json.dumps({"profile": "tiny", "tracking": sqlite_config.tracking.model_dump()}))
    runner = CliRunner()

    def cli(*args):
        return runner.invoke(models_app, [*args, "--config", str(config_file)])

    def failing(*args) -> tuple[int, list[str]]:
        """Run `asdflow models ...` through the real entry point: its exit code and stderr lines."""
        monkeypatch.setattr(sys, "argv", ["asdflow", "models", *args, "--config", str(config_file)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main()
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out
        return done.value.code, [line for line in captured.err.splitlines() if line.strip()]

    promoted = cli("promote", MACHINE, v1, "--expect-champion", "none")
    assert promoted.exit_code == 0, promoted.output
    assert f"@champion -> version {v1} (was no champion)" in promoted.output
    assert failing("promote", MACHINE, v2, "--expect-champion", v2) == (2, [
        f"asdflow: error: {NAME}@champion is version {v1}, but the decision to promote version {v2} was made "
        f"against version {v2}: re-run the gate before promoting"
    ])
    assert cli("promote", MACHINE, v2).exit_code == 0

    listing = cli("list", MACHINE)
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0].split()[:3] == ["version", "aliases", "official"]
    assert lines[1].split()[:3] == [v2, "champion,challenger", f"{material.good.official:.4f}"]
    assert lines[2].split()[:3] == [v1, "-", "-"]
    as_json = json.loads(cli("list", MACHINE, "--json").output)
    assert [v["version"] for v in as_json] == [v2, v1]

    compared = cli("compare", MACHINE)
    assert compared.exit_code == 0 and compared.output.splitlines()[1].split() == ["version", v2, v2]
    rolled = cli("rollback", MACHINE)
    assert rolled.exit_code == 0 and f"@champion -> version {v1} (rolled back from version {v2})" in rolled.output
    assert failing("compare", "no_such_machine") == (2, [
        "asdflow: error: no registered model asd-no_such_machine: train and register a no_such_machine detector first"
    ])


def test_a_challenger_that_cannot_score_is_rejected_with_the_reason(tmp_path, material, sqlite_config):
    broken = tmp_path / "broken_detector"
    shutil.copytree(material.good.directory, broken)
    (broken / "autoencoder.pt").write_bytes(b"not a torch file")
    register_detector(broken, MACHINE, sqlite_config, project_dir=tmp_path)

    decision = apply_decision(_gate(sqlite_config, material, tmp_path, absolute_floor=0.0), sqlite_config, tmp_path)
    assert decision.verdict == "reject" and decision.promotion is None
    assert decision.reason.startswith("challenger v1 could not be scored: ") and decision.challenger.error
    assert math.isnan(decision.challenger.official) and decision.challenger.n_flagged == 0
    assert current_aliases(MACHINE, sqlite_config, tmp_path)["champion"] is None
    saved = GateDecision.load(tmp_path / "gate")
    assert saved.verdict == "reject" and saved.challenger.error == decision.challenger.error


def test_several_challengers_are_measured_together_and_the_best_stands(tmp_path, material, sqlite_config):
    """One pipeline run, several families: every challenger on the same clips, the best one decides."""
    weak_version = _register(material.weak, sqlite_config, tmp_path)
    good_version = _register(material.good, sqlite_config, tmp_path)
    config = sqlite_config.model_copy(update={"gate": sqlite_config.gate.model_copy(update={"absolute_floor": 0.0})})
    decision = run_gate(MACHINE, material.manifest, config, tmp_path / "gate", project_dir=tmp_path,
                        challenger_version=f"{weak_version},{good_version}")
    assert decision.verdict == "promote" and decision.challenger.version == good_version
    assert [c.version for c in decision.other_challengers] == [weak_version]
    assert decision.other_challengers[0].official == pytest.approx(material.weak.official, abs=1e-6)
    client = _client(sqlite_config)
    assert client.get_model_version(NAME, good_version).tags["gate_verdict"] == "promote"
    assert client.get_model_version(NAME, weak_version).tags["gate_verdict"].startswith("not best")
    apply_decision(decision, config, tmp_path)
    assert current_aliases(MACHINE, sqlite_config, tmp_path)["champion"] == good_version

    # the champion handed in again among new challengers is compared, not mistaken for one of them
    again = _register(material.weak, sqlite_config, tmp_path)
    decision = run_gate(MACHINE, material.manifest, config, tmp_path / "gate2", project_dir=tmp_path,
                        challenger_version=[again, good_version])
    assert decision.challenger.version == good_version and decision.verdict == "keep"


def test_challenger_versions_parse_the_pipeline_forms():
    from asdflow.registry.gate import challenger_versions

    assert challenger_versions(None) == [] and challenger_versions("") == []
    assert challenger_versions("3") == ["3"] and challenger_versions(4) == ["4"]
    assert challenger_versions(" 3, 5 ,3,") == ["3", "5"] and challenger_versions([1, "2"]) == ["1", "2"]


def _without_test_anomalies(material):
    from asdflow.data.manifest import Manifest

    kept = [r for r in material.manifest.records if not (r.split == "test" and r.label == "anomaly")]
    return Manifest(root=material.manifest.root, records=kept)


def test_label_free_gate_promotes_the_better_and_keeps_the_worse_on_simulated_evidence(
        tmp_path, material, sqlite_config):
    """No labelled anomaly in the evaluation split (a plant's usual data): the gate judges on the held-out
    normal test clips and anomalies simulated from them, and still tells the good detector from the weak."""
    manifest = _without_test_anomalies(material)
    config = sqlite_config.model_copy(update={"gate": sqlite_config.gate.model_copy(update={"absolute_floor": 0.0})})

    weak_version = _register(material.weak, config, tmp_path)
    first = apply_decision(run_gate(MACHINE, manifest, config, tmp_path / "g1", project_dir=tmp_path), config, tmp_path)
    assert first.verdict == "promote" and first.evidence == "simulated"
    n_normals = sum(1 for r in manifest.records if r.machine_type == MACHINE and r.split == "test")
    assert first.n_normal_clips == n_normals
    assert first.n_anomalous_clips == n_normals * len(config.gate.simulated_kinds)
    assert "simulated" in first.reason

    good_version = _register(material.good, config, tmp_path)
    better = apply_decision(run_gate(MACHINE, manifest, config, tmp_path / "g2", project_dir=tmp_path), config, tmp_path)
    assert better.evidence == "simulated" and better.verdict == "promote", better.reason
    assert better.challenger.version == good_version and better.champion.version == weak_version
    assert better.challenger.score > better.champion.score
    # the weak detector's threshold was learnt on another machine: it flags most normal fan clips
    assert better.champion.false_alarm_rate > better.challenger.false_alarm_rate
    assert current_aliases(MACHINE, config, tmp_path)["champion"] == good_version

    again = _register(material.weak, config, tmp_path)
    worse = run_gate(MACHINE, manifest, config, tmp_path / "g3", project_dir=tmp_path)
    assert worse.evidence == "simulated" and worse.verdict == "keep", worse.reason
    assert worse.challenger.version == again and worse.champion.version == good_version
    record = json.loads((tmp_path / "g3" / DECISION_FILE).read_text())
    assert record["evidence"] == "simulated" and record["simulated_kinds"] == config.gate.simulated_kinds
    assert 0.0 <= record["champion"]["false_alarm_rate"] <= 1.0


def test_gate_judges_on_labelled_anomalies_when_the_data_has_them(tmp_path, material, sqlite_config):
    _register(material.good, sqlite_config, tmp_path)
    decision = _gate(sqlite_config, material, tmp_path, absolute_floor=0.0)
    assert decision.evidence == "labelled" and decision.simulated_kinds == []
    assert decision.n_anomalous_clips == sum(
        1 for r in material.fan.records if r.split == "test" and r.label == "anomaly")
    assert decision.challenger.official == pytest.approx(material.good.official, abs=1e-6)
    assert 0.0 <= decision.challenger.false_alarm_rate <= 1.0
