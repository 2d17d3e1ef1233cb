"""Register -> gate -> promote -> rollback over HTTP against a real `mlflow server` on 127.0.0.1,
as on a cluster (there: PostgreSQL and an object store; here: SQLite and a local folder
that only the server writes to)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from asdflow.data.audio import load_audio
from asdflow.errors import AsdflowError
from asdflow.processes import free_port, running, wait_ready
from asdflow.registry.gate import DECISION_FILE, apply_decision, run_gate
from asdflow.registry.models import ChampionChangedError, current_aliases, list_models, promote, register_detector, rollback
from asdflow.registry.tracking import log_training_run

MACHINE = "fan"
NAME = "asd-fan"
START_DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, empty_store):
    """A real `mlflow server` subprocess; yields (url, its artifact folder); killed at the end."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    db = folder / "backend.db"
    shutil.copy(empty_store, db)  # tables already created: the server starts in seconds
    artifacts = folder / "served_artifacts"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts)]
    # the server runs its web workers as children: `running` stops the whole process group it leads
    with running(argv, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, cwd=folder,
                 log_path=folder / "server.log") as process:
        try:
            wait_ready(url, process, START_DEADLINE_S, path="/health")
        except AsdflowError as err:
            pytest.fail(f"mlflow server not healthy: {err}:\n{(folder / 'server.log').read_text()[-3000:]}")
        yield url, artifacts


def test_register_gate_promote_and_rollback_over_http(tmp_path, material, tiny_config, mlflow_server):
    url, served = mlflow_server
    # the default relative artifact location is dropped for a server: artifacts go through it
    config = tiny_config.model_copy(update={"tracking": tiny_config.tracking.model_copy(update={"tracking_uri": url})})
    good, weak, fan = material.good, material.weak, material.fan

    def train_and_register(detector) -> str:
        run = log_training_run(MACHINE, config, scores=detector.scores, eval_manifest=fan,
                               detector_dir=detector.directory, project_dir=tmp_path, data_hash="feedbeef")
        return register_detector(detector.directory, MACHINE, config, run_id=run.run_id, project_dir=tmp_path).version

    weak_version = train_and_register(weak)
    first = apply_decision(run_gate(MACHINE, fan, config.gate.model_copy(update={"absolute_floor": 0.0}),
                                    tmp_path / "gate1", tracking=config.tracking, project_dir=tmp_path), config)
    assert first.verdict == "promote" and first.promotion.version == weak_version

    good_version = train_and_register(good)
    decision = run_gate(MACHINE, fan, config.model_copy(update={"gate": config.gate.model_copy(update={"absolute_floor": 0.0})}),
                        tmp_path / "gate2", project_dir=tmp_path)
    assert (decision.challenger.version, decision.champion.version) == (good_version, weak_version)
    assert decision.challenger.official == pytest.approx(good.official, abs=1e-6)
    assert decision.champion.official == pytest.approx(weak.official, abs=1e-6)
    assert decision.verdict == "promote"
    apply_decision(decision, config, tmp_path)
    assert current_aliases(MACHINE, config, tmp_path) == {"champion": good_version, "challenger": good_version}

    # the promoted champion, loaded over HTTP, scores like the detector it wraps
    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    clips = fan.select(split="test").records[:4]
    out = champion.predict(pd.DataFrame({"waveform": [load_audio(r.path, 16000) for r in clips]}))
    np.testing.assert_allclose(out["score"], [good.scores[r.name] for r in clips], rtol=1e-5)

    # artifacts went through the server into its destination, not into a local mlruns folder
    client = mlflow.MlflowClient(url, url)
    record = Path(client.download_artifacts(decision.challenger.run_id, f"gate/{DECISION_FILE}", str(tmp_path)))
    assert '"verdict": "promote"' in record.read_text()
    assert list(served.rglob(DECISION_FILE)) and list(served.rglob("detector.json"))
    assert not (tmp_path / "mlruns").exists()

    # a promotion decided against an older champion is refused
    with pytest.raises(ChampionChangedError):
        promote(MACHINE, weak_version, expected_champion=weak_version, config=config, project_dir=tmp_path)
    listed = {v.version: v.aliases for v in list_models(MACHINE, config, tmp_path)}
    assert listed == {good_version: ["champion", "challenger"], weak_version: []}

    back = rollback(MACHINE, config, tmp_path)
    assert (back.version, back.previous_champion) == (weak_version, good_version)
    assert client.get_model_version_by_alias(NAME, "champion").tags["dvc_data_hash"] == "feedbeef"
