"""What the server scores is what the gate judged: the same registered model, the same path from
waveform to score, the same number for the same clip.

- fan: a twfr detector trained on separated clips (`separation.use: separated`), registered with
  the separator it was trained behind; the gate and the server hand it raw clips and it separates them;
- pump: a conditional_ae, which conditions on each clip's domain and attributes: the gate hands them
  from the manifest, the server reads them from the uploaded file's DCASE name.

A real SQLite MLflow registry, a real `asdflow serve` (bentoml) on 127.0.0.1 serving every champion
it finds (no `serving.machine_types`), every call over HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from asdflow.config import load_config
from asdflow.processes import running

from tests.serving.test_service_http import REPO_ROOT, START_DEADLINE_S, _poll, serve_command

pytestmark = pytest.mark.slow
CLIPS_PER_MACHINE = 6


@pytest.fixture(scope="module")
def gated(tmp_path_factory, tiny_manifest):
    from asdflow.jobs import load_dataset, train_detector
    from asdflow.registry.gate import SCORES_PREFIX, run_gate
    from asdflow.registry.models import promote, register_detector
    from asdflow.separation.stages import denoise_stage, separation_train_stage

    work = tmp_path_factory.mktemp("served_equals_gated")
    config_file = work / "serving.yaml"
    config_file.write_text(yaml.safe_dump({
        "profile": "tiny", "progress": False,
        "tracking": {"tracking_uri": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}",
                     "artifact_location": str(work / "mlruns" / "artifacts")},
        "serving": {"reload_interval_s": 1.0, "min_seconds": 0.02},
        "gate": {"absolute_floor": 0.0},
    }))
    config = load_config(config_file)
    twfr = config.model_copy(update={"detector": config.detector.model_copy(update={"family": "twfr"})})
    cae = config.model_copy(deep=True)
    cae.detector.family = "conditional_ae"
    cae.detector.conditional_ae.epochs = 4

    separator = separation_train_stage(tiny_manifest, "fan", config, work / "separator", register=False)
    denoise_stage(separator.separator_dir, tiny_manifest, "fan", work / "separated", progress=False)
    fan_dir = train_detector(load_dataset(work / "separated", progress=False), "fan", twfr, work / "fan").detector_dir
    pump_dir = train_detector(tiny_manifest, "pump", cae, work / "pump").detector_dir

    fan = register_detector(fan_dir, "fan", config, separator_dir=separator.separator_dir)
    pump = register_detector(pump_dir, "pump", config)
    scores = {}
    for machine, version in (("fan", fan.version), ("pump", pump.version)):
        decision = run_gate(machine, tiny_manifest, config, work / f"gate_{machine}", challenger_version=version)
        assert decision.verdict == "promote" and decision.evidence == "labelled", decision.reason
        promote(machine, version, None, config)
        frame = pd.read_csv(work / f"gate_{machine}" / f"{SCORES_PREFIX}{version}.csv")
        scores[machine] = frame.head(CLIPS_PER_MACHINE)
    records = {r.name: r for r in tiny_manifest.records}
    return config, config_file, work, scores, records, separator


@pytest.fixture(scope="module")
def server(gated):
    config, config_file, work, *_ = gated
    log = work / "server.log"
    argv, env, url = serve_command(config_file)
    with running(argv, env=env, cwd=REPO_ROOT, log_path=log) as process:
        _poll(lambda: requests.get(f"{url}/readyz", timeout=5).status_code == 200, START_DEADLINE_S,
              "both champions loaded", process, log)
        yield url


def test_the_fan_model_carries_the_separator_it_was_trained_behind(gated):
    import mlflow

    config, *_, separator = gated
    client = mlflow.MlflowClient(config.tracking.tracking_uri, config.tracking.tracking_uri)
    version = client.get_model_version_by_alias("asd-fan", "champion")
    assert version.tags["separator_version"] == separator.version
    assert "separator_version" not in client.get_model_version_by_alias("asd-pump", "champion").tags


def test_the_server_serves_every_champion_it_finds(server):
    status = requests.get(f"{server}/models", timeout=5).json()
    assert status["ready"] is True and set(status["models"]) == {"fan", "pump"}


@pytest.mark.parametrize("machine", ["fan", "pump"])
def test_served_scores_equal_the_gate_s_scores_on_the_same_clips(gated, server, machine):
    *_, scores, records, _ = gated
    for row in scores[machine].itertuples():
        path = Path(records[row.name].path)
        answer = requests.post(f"{server}/score", files={"audio": (path.name, path.read_bytes(), "audio/wav")},
                               data={"machine_type": machine}, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["score"] == pytest.approx(row.score, rel=1e-5, abs=1e-6), row.name
        assert body["is_anomalous"] == bool(row.decision), row.name


def test_conditions_can_come_as_fields_and_a_bad_domain_is_refused(gated, server):
    """conditional_ae: an upload without a DCASE name, with its domain and attributes as form fields,
    scores as the named upload (and as the gate) did; another domain scores differently."""
    import json

    *_, scores, records, _ = gated
    row = scores["pump"].iloc[0]
    record = records[row["name"]]
    audio = Path(record.path).read_bytes()

    def score(filename: str, **fields) -> requests.Response:
        return requests.post(f"{server}/score", files={"audio": (filename, audio, "audio/wav")},
                             data={"machine_type": "pump", **fields}, timeout=60)

    as_fields = score("clip.wav", domain=record.domain, section=record.section,
                      attributes=json.dumps(record.attributes)).json()["score"]
    assert as_fields == pytest.approx(row["score"], rel=1e-5, abs=1e-6)
    other = "target" if record.domain == "source" else "source"
    assert score(record.name, domain=other).json()["score"] != pytest.approx(row["score"], rel=1e-6)
    refused = score("clip.wav", domain="elsewhere")
    assert refused.status_code == 422 and refused.json()["reason"] == "bad_domain"
