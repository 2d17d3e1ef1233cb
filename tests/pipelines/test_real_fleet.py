"""A plant's real data, end to end: the fleet pipeline over all seven machine types of the real DCASE 2023
clips in ../shared/data/real/dcase2023t2_dev (2 train + 2 test clips each; valve 200 test), through
kfp.local, then `asdflow serve` on 127.0.0.1 serving the seven champions it finds in the registry and
scoring one real clip of each machine type over HTTP.

What this data makes the run do, and the test checks: the machine types come from the data (the CLI
names none); DCASE 2023 has no supplemental folder, so separation is skipped with its reason, not
failed; a machine type without labelled test anomalies (ToyCar, slider) is gated on simulated
evidence; one with a single labelled anomaly gets a partial score marked as not official; valve gets
the official score on its 200 clips. Two clips a machine type cannot show a good detector: the gate's
floor is off (0), and the validation minimums are those of such data (one domain, no target clips).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import mlflow
import pytest
import requests
import yaml
from typer.testing import CliRunner

from asdflow.cli_pipeline import pipeline_app
from asdflow.processes import running
from pipelines.local import gate_decisions

from tests.serving.test_service_http import REPO_ROOT, _poll, serve_command

pytestmark = pytest.mark.slow
SEVEN = ["ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve"]
SERVE_DEADLINE_S = 240.0


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory, real_data):
    root = tmp_path_factory.mktemp("real_fleet")
    source = real_data / "dcase2023t2_dev"
    for machine in SEVEN:  # the layout as it is, not a byte of it in the repository
        shutil.copytree(source / machine, root / "project" / "data" / machine)
    tracking = {"tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
                "artifact_location": str(root / "mlruns" / "artifacts")}
    user = root / "plant.yaml"
    user.write_text(yaml.safe_dump({
        "progress": False, "tracking": tracking,
        "detector": {"family": "twfr", "families": None},
        "separation": {"enabled": True, "use": "separated"},  # no supplemental clips here: skipped
        "validation": {"require_both_domains": False, "min_train_per_domain": 0, "min_test_per_domain_and_label": 0,
                       "max_duration": 13.0},
        "gate": {"absolute_floor": 0.0, "min_heldout_normals": 2},
    }))
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = CliRunner().invoke(pipeline_app, [
            "run", "--local", "--pipeline", "fleet", "--profile", "tiny", "-q", "--config", str(user),
            "--project", str(root / "project"), "--work-dir", str(root / "kfp"),
        ])
    seconds = time.perf_counter() - started
    print(f"\nreal seven-type fleet run: {seconds:.0f} s")
    (root / "fleet.log").write_text(result.output)
    errors = [line for line in result.output.splitlines() if " - ERROR - " in line or "Error:" in line]
    assert result.exception is None, "\n".join(errors[:20]) + f"\n(whole log: {root / 'fleet.log'})"
    run_dir = Path(next(line.split("outputs under ")[1] for line in result.output.splitlines()
                        if "outputs under" in line))
    return root, user, tracking, result.output, run_dir


def test_the_machine_types_come_from_the_data_and_every_one_is_gated(fleet_run):
    _, _, tracking, output, run_dir = fleet_run
    assert f"machine types from the data at workspace: {', '.join(SEVEN)}" in output
    assert len(list(run_dir.rglob("fetch-data/data"))) == 1, "one fetch for the fleet"
    decisions = gate_decisions(run_dir)
    assert sorted(decisions) == SEVEN
    assert all(d.verdict == "promote" for d in decisions.values()), {m: d.reason for m, d in decisions.items()}
    client = mlflow.MlflowClient(tracking["tracking_uri"], tracking["tracking_uri"])
    for machine in SEVEN:
        assert str(client.get_model_version_by_alias(f"asd-{machine}", "champion").version) == "1"


def test_each_machine_type_is_judged_on_the_evidence_its_data_has(fleet_run):
    *_, run_dir = fleet_run
    decisions = gate_decisions(run_dir)
    valve = decisions["valve"]
    assert valve.evidence == "labelled" and valve.n_normal_clips == 100 and valve.n_anomalous_clips == 100
    # the official score on 200 real test clips; two training clips make a weak detector (0.58 measured)
    assert 0.5 < valve.challenger.official <= 1
    for machine in ("ToyCar", "slider"):  # two normal test clips, no labelled anomaly
        d = decisions[machine]
        assert d.evidence == "simulated" and d.n_normal_clips == 2 and d.n_anomalous_clips == 2 * len(d.simulated_kinds)
        assert 0 <= d.challenger.false_alarm_rate <= 1
    for machine in ("fan", "bearing", "gearbox", "ToyTrain"):  # one normal and one anomaly
        assert decisions[machine].evidence == "labelled"
    fan_report = json.loads(next(p for p in run_dir.rglob("evaluation.json") if "fan" in p.read_text()).read_text())
    assert fan_report["partial"] and "not the official score" in fan_report["partial"]


def test_separation_without_supplemental_clips_is_skipped_with_its_reason(fleet_run):
    _, _, tracking, _, run_dir = fleet_run
    markers = list(run_dir.rglob("separation_skipped.json"))
    assert len({json.loads(p.read_text())["machine_type"] for p in markers}) == len(SEVEN)
    client = mlflow.MlflowClient(tracking["tracking_uri"], tracking["tracking_uri"])
    experiment = client.get_experiment_by_name("asdflow")
    skipped = client.search_runs([experiment.experiment_id], "tags.skipped = 'true'")
    assert {r.data.tags["machine_type"] for r in skipped} == set(SEVEN)
    assert all("no supplemental clips" in r.data.tags["skip_reason"] for r in skipped)


def test_the_server_serves_the_seven_champions_and_scores_a_real_clip_of_each(fleet_run, real_data):
    root, user, *_ = fleet_run
    log = root / "server.log"
    argv, env, url = serve_command(user, "--profile", "tiny")
    env.pop("MLFLOW_TRACKING_URI", None)
    with running(argv, env=env, cwd=REPO_ROOT, log_path=log) as process:
        _poll(lambda: requests.get(f"{url}/readyz", timeout=5).status_code == 200, SERVE_DEADLINE_S,
              "seven champions loaded", process, log)
        status = requests.get(f"{url}/models", timeout=5).json()
        assert sorted(status["models"]) == SEVEN
        for machine in SEVEN:
            clip = sorted((real_data / "dcase2023t2_dev" / machine / "test").glob("*.wav"))[0]
            answer = requests.post(f"{url}/score", files={"audio": (clip.name, clip.read_bytes(), "audio/wav")},
                                   data={"machine_type": machine}, timeout=120)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model_version"] == "1" and body["decision"] in ("normal", "anomalous")
