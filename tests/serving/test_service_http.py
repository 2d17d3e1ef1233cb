"""The BentoML detector service for real: `asdflow serve` (cli_serve.serve) starts `bentoml serve`
on 127.0.0.1, against a real MLflow SQLite store holding real tiny baseline detectors, and
every call goes over HTTP.

One server for the module. The fixture registers fan and pump, promotes only fan, starts the
server and records what it answered while pump had no champion (not ready), then promotes
pump and waits for /readyz. The last test promotes a new fan version while the server runs.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import soundfile as sf
import yaml

from asdflow.config import AsdflowConfig, load_config
from asdflow.data.audio import load_audio, resample
from asdflow.detectors.base import Detector, load_detector
from asdflow.processes import free_port, running

REPO_ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 150.0
RELOAD_INTERVAL_S = 1.0
RELOAD_DEADLINE_S = 90.0
MIN_SECONDS = 0.02  # below the detector's own minimum (5 stacked frames): the server raises it to that
MAX_UPLOAD_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
SR = 16000


def _wav(samples: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def serve_command(config_file: Path, *extra: str) -> tuple[list[str], dict[str, str], str]:
    """argv, environment and URL of the real `asdflow serve` command function, as a one-command CLI
    on a free port; no --host: the default must be loopback."""
    port = free_port()
    argv = [sys.executable, "-c", "import typer; from asdflow.cli_serve import serve; typer.run(serve)",
            "--config", str(config_file), "--port", str(port), *extra]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "true"}
    return argv, env, f"http://127.0.0.1:{port}"


def _poll(check, deadline_s: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    """Call check() until it returns something truthy; fail with the server log after the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        if process is not None and process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode} while waiting for {what}:\n{_tail(log)}")
        try:
            result = check()
            if result:
                return result
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {deadline_s:.0f} s\n{_tail(log)}")
        time.sleep(0.25)


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""


@dataclass
class Served:
    url: str
    config: AsdflowConfig
    process: subprocess.Popen
    log: Path
    detectors: dict[str, Detector]  # the registered v1 of each machine type
    detector_dirs: dict[str, Path]
    clips: dict[str, Path]  # machine type -> one test clip
    spare_fan_dir: Path  # another fan detector, promoted by the hot-reload test
    before_pump: dict[str, Any] = field(default_factory=dict)  # what the server said while pump had no champion


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.data.synth import synthesize_dataset
    from asdflow.jobs import train_detector
    from asdflow.registry.models import promote, register_detector

    work = tmp_path_factory.mktemp("serving")
    base = load_config(profile="tiny")
    synthesize_dataset(base.synth.model_copy(update={"machine_types": ["fan", "pump"]}), work / "data",
                       progress=False, workers=1)
    manifest = build_manifest(work / "data", progress=False)
    quiet = base.model_copy(update={"progress": False})
    dirs = {mt: Path(train_detector(manifest, mt, quiet, work / f"det_{mt}").detector_dir) for mt in ("fan", "pump")}
    spare = Path(train_detector(manifest, "fan", quiet.model_copy(update={"seed": 7}), work / "det_fan_v2").detector_dir)

    config_file = work / "serving.yaml"
    config_file.write_text(yaml.safe_dump({
        "profile": "tiny",
        "tracking": {"tracking_uri": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}",
                     "artifact_location": str(work / "mlruns" / "artifacts")},
        "serving": {"machine_types": ["fan", "pump"], "reload_interval_s": RELOAD_INTERVAL_S,
                    "min_seconds": MIN_SECONDS, "max_seconds": 3.0, "max_upload_bytes": MAX_UPLOAD_BYTES,
                    "max_request_bytes": MAX_REQUEST_BYTES, "max_batch_size": 8, "max_latency_ms": 30000},
    }))
    config = load_config(config_file)
    fan = register_detector(dirs["fan"], "fan", config)
    promote("fan", fan.version, None, config)
    pump = register_detector(dirs["pump"], "pump", config)  # @challenger only, for now

    log = work / "server.log"
    argv, env, url = serve_command(config_file)
    clips = {mt: Path(next(r.path for r in manifest.select(machine_type=mt, split="test").records))
             for mt in ("fan", "pump")}
    with running(argv, env=env, cwd=REPO_ROOT, log_path=log) as process:  # stopped, workers included, at the end
        result = Served(url=url, config=config, process=process, log=log,
                        detectors={mt: load_detector(d) for mt, d in dirs.items()}, detector_dirs=dirs,
                        clips={mt: Path(p) for mt, p in clips.items()}, spare_fan_dir=spare)

        def fan_loaded():
            models = requests.get(f"{url}/models", timeout=5).json()["models"]
            return models if models["fan"]["version"] == fan.version else None

        models = _poll(fan_loaded, START_DEADLINE_S, "fan model loaded", process, log)
        time.sleep(2 * RELOAD_INTERVAL_S)  # a reload pass or two: pump must still be missing
        result.before_pump = {
            "models": requests.get(f"{url}/models", timeout=5).json()["models"],
            "first_models": models,
            "readyz": requests.get(f"{url}/readyz", timeout=5).status_code,
            "readyz_body": requests.get(f"{url}/readyz", timeout=5).json(),
            "readyz_fan": requests.get(f"{url}/readyz?machine_type=fan", timeout=5).status_code,
            "readyz_pump": requests.get(f"{url}/readyz?machine_type=pump", timeout=5).status_code,
            "livez": requests.get(f"{url}/livez", timeout=5).status_code,
            "pump_score": _post_wav(url, "pump", clips["pump"].read_bytes()),
            "fan_score": _post_wav(url, "fan", clips["fan"].read_bytes()),
        }
        promote("pump", pump.version, None, config)
        _poll(lambda: requests.get(f"{url}/readyz", timeout=5).status_code == 200,
              RELOAD_DEADLINE_S, "ready after promoting pump", process, log)
        yield result


def _post_wav(url: str, machine_type: str, data: bytes, filename: str = "clip.wav") -> requests.Response:
    return requests.post(f"{url}/score", files={"audio": (filename, data, "audio/wav")},
                         data={"machine_type": machine_type}, timeout=60)


def _expected_score(served: Served, machine_type: str, waveform: np.ndarray) -> float:
    return float(served.detectors[machine_type].score_waveform(waveform))


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in /metrics")


# -- readiness ---------------------------------------------------------------------------------


def test_not_ready_until_every_champion_is_loaded(served):
    before = served.before_pump
    assert before["livez"] == 200
    assert before["readyz"] == 503  # fan loaded and warm, pump has no @champion yet
    assert before["readyz_body"] == {"ready": False, "machine_types": {"fan": True, "pump": False}}
    assert (before["readyz_fan"], before["readyz_pump"]) == (200, 503)  # per machine type, for a router
    assert before["models"]["fan"]["version"] == "1" and before["models"]["fan"]["error"] is None
    assert before["models"]["pump"]["version"] is None
    assert "asd-pump has no @champion alias" in before["models"]["pump"]["error"]
    pump = before["pump_score"]
    assert pump.status_code == 503 and pump.json()["reason"] == "model_not_loaded"
    assert "asd-pump has no @champion" in pump.json()["error"]
    assert before["fan_score"].status_code == 200  # a loaded machine type is served meanwhile


def test_ready_once_promoted_and_every_model_listed(served):
    assert requests.get(f"{served.url}/readyz", timeout=5).status_code == 200
    assert requests.get(f"{served.url}/livez", timeout=5).status_code == 200
    status = requests.get(f"{served.url}/models", timeout=5).json()
    assert status["ready"] is True
    for mt in ("fan", "pump"):
        entry = status["models"][mt]
        assert entry["name"] == f"asd-{mt}" and entry["version"] == "1" and entry["error"] is None
        assert entry["threshold"] == pytest.approx(served.detectors[mt].threshold)


def test_server_binds_loopback_only(served):
    port = served.url.rsplit(":", 1)[1]
    addresses = [a for a in _local_addresses() if a != "127.0.0.1"]
    if not addresses:
        pytest.skip("no non-loopback address on this machine to try")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{addresses[0]}:{port}/livez", timeout=3)


def _local_addresses() -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # no packet is sent: only picks the outgoing interface
            return [sock.getsockname()[0]]
        except OSError:
            return []


# -- scoring ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("machine_type", ["fan", "pump"])
def test_wav_upload_is_scored_like_the_library_scores_it(served, machine_type):
    path = served.clips[machine_type]
    response = _post_wav(served.url, machine_type, path.read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    detector = served.detectors[machine_type]
    expected = _expected_score(served, machine_type, load_audio(path, SR))
    assert body["machine_type"] == machine_type
    assert body["model_name"] == f"asd-{machine_type}" and body["model_version"] == "1"
    assert body["score"] == pytest.approx(expected, rel=1e-4)
    assert body["threshold"] == pytest.approx(detector.threshold)
    assert body["is_anomalous"] == (body["score"] > body["threshold"])
    assert body["decision"] == ("anomalous" if body["is_anomalous"] else "normal")
    assert body["notes"] == [] and body["sample_rate"] == SR
    assert body["duration_s"] == pytest.approx(1.0)


def test_json_float_array_scores_the_same_as_the_upload(served):
    waveform = load_audio(served.clips["fan"], SR)
    upload = _post_wav(served.url, "fan", served.clips["fan"].read_bytes()).json()
    response = requests.post(f"{served.url}/score", timeout=60,
                             json={"machine_type": "fan", "waveform": waveform.tolist(), "sample_rate": SR})
    assert response.status_code == 200, response.text
    assert response.json()["score"] == pytest.approx(upload["score"], rel=1e-5)
    as_base64 = requests.post(f"{served.url}/score", timeout=60, json={
        "machine_type": "fan", "audio_base64": base64.b64encode(served.clips["fan"].read_bytes()).decode()})
    assert as_base64.status_code == 200 and as_base64.json()["score"] == pytest.approx(upload["score"], rel=1e-5)


def test_stereo_is_mixed_down_and_stated(served):
    mono = load_audio(served.clips["fan"], SR)
    other = np.roll(mono, 4000) * 0.5
    response = _post_wav(served.url, "fan", _wav(np.stack([mono, other], axis=1), subtype="FLOAT"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "stereo mixed down to mono (mean of 2 channels)" in body["notes"]
    assert body["score"] == pytest.approx(_expected_score(served, "fan", (mono + other) / 2), rel=1e-4)


def test_other_sample_rate_is_resampled_and_stated(served):
    mono = load_audio(served.clips["fan"], SR)
    at_44k = resample(mono, SR, 44100)
    response = _post_wav(served.url, "fan", _wav(at_44k, 44100, subtype="FLOAT"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["notes"] == ["resampled from 44100 Hz to 16000 Hz"]
    assert body["score"] == pytest.approx(_expected_score(served, "fan", resample(at_44k, 44100, SR)), rel=1e-4)


# -- refusals: a 4xx with a reason, never a 500 ------------------------------------------------------

_RNG = np.random.default_rng(0)
_ONE_S = (_RNG.standard_normal(SR) * 0.1).astype(np.float32)
_NAN = _ONE_S.copy()
_NAN[100] = np.nan
_WHOLE = _wav(np.tile(_ONE_S, 2))


@pytest.mark.parametrize(
    ("machine_type", "data", "status", "reason"),
    [
        ("fan", b"this is a text file, not a recording", 415, "not_audio"),
        ("fan", bytes(_RNG.integers(0, 256, 4096, dtype=np.uint8)), 415, "not_audio"),
        ("fan", _WHOLE[: len(_WHOLE) // 2], 400, "truncated"),
        ("fan", _WHOLE[:30], 400, "truncated"),
        ("fan", b"", 400, "empty"),
        ("fan", _wav(np.zeros(0, np.float32)), 400, "empty"),
        ("fan", _wav(_ONE_S[:100]), 422, "too_short"),
        ("fan", _wav(_ONE_S[: SR // 10]), 422, "too_short"),  # above serving.min_seconds, below the detector's floor
        ("fan", _wav(np.zeros(4 * SR, np.float32)), 413, "too_long"),
        ("fan", _wav(np.zeros((2 * 48000, 2), np.float32), 48000, "FLOAT"), 413, "too_large"),  # 2 s, 768 kB
        ("fan", _wav(_NAN, subtype="FLOAT"), 422, "non_finite"),
        ("valve", _wav(_ONE_S), 404, "unknown_machine_type"),
    ],
    ids=["text", "random-bytes", "truncated", "cut-in-header", "zero-bytes", "no-samples", "too-short",
         "below-detector-floor", "too-long", "too-large", "nan", "unknown-machine"],
)
def test_bad_upload_gets_a_4xx_with_a_reason(served, machine_type, data, status, reason):
    response = _post_wav(served.url, machine_type, data)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason and body["status"] == status
    assert len(body["error"]) > 10


def test_too_large_upload_between_the_body_guard_and_the_file_cap(served):
    # passes the request-size guard (upload cap + form overhead) but not the file cap itself
    data = _wav(np.zeros(MAX_UPLOAD_BYTES // 2 + 1000, np.float32), 96000)
    assert MAX_UPLOAD_BYTES < len(data) < MAX_UPLOAD_BYTES + 64 * 1024
    response = _post_wav(served.url, "fan", data)
    assert response.status_code == 413 and response.json()["reason"] == "too_large"


def _post_json(served: Served, body: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(f"{served.url}/score", data=body, headers={"content-type": content_type}, timeout=60)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (json.dumps({"machine_type": "fan", "waveform": [0.1, float("nan")] * SR}).encode(), 422, "non_finite"),
        (json.dumps({"machine_type": "fan", "waveform": [0.1, float("inf")] * SR}).encode(), 422, "non_finite"),
        (json.dumps({"machine_type": "fan", "waveform": [0.0] * SR, "sample_rate": 5}).encode(), 422, "bad_sample_rate"),
        (json.dumps({"machine_type": "fan", "waveform": [0.0] * 100}).encode(), 422, "too_short"),
        (json.dumps({"machine_type": "fan", "waveform": [0.0] * (4 * SR)}).encode(), 413, "too_long"),
        (json.dumps({"machine_type": "fan", "waveform": []}).encode(), 400, "empty"),
        (json.dumps({"machine_type": "fan"}).encode(), 400, "no_audio"),
        (json.dumps({"machine_type": "fan", "waveform": [0.0] * SR, "audio_base64": "AAAA"}).encode(), 400,
         "ambiguous_input"),
        (json.dumps({"machine_type": "fan", "audio_base64": "not base64 !!"}).encode(), 400, "bad_base64"),
        (json.dumps({"machine_type": "valve", "waveform": [0.0] * SR}).encode(), 404, "unknown_machine_type"),
        (b"[" + b"0.0," * (MAX_REQUEST_BYTES // 4) + b"0.0]", 413, "too_large"),
    ],
    ids=["nan", "inf", "bad-rate", "too-short", "too-long", "empty", "no-audio", "two-inputs", "bad-base64",
         "unknown-machine", "body-too-large"],
)
def test_bad_json_request_gets_a_4xx_with_a_reason(served, body, status, reason):
    response = _post_json(served, body)
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (json.dumps({"waveform": [0.0] * SR}).encode(), "application/json"),  # no machine_type
        (json.dumps({"machine_type": "fan", "waveform": "loud"}).encode(), "application/json"),
        (b"--xyz\r\nbroken", "multipart/form-data"),  # no boundary
        (b"--xyz\r\nnot a form part", "multipart/form-data; boundary=xyz"),
    ],
    ids=["malformed-json", "no-machine-type", "waveform-not-array", "multipart-no-boundary", "broken-multipart"],
)
def test_malformed_request_is_a_400(served, body, content_type):
    response = _post_json(served, body, content_type)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_chunked_body_above_the_limit_is_a_413(served):
    def chunks():
        block = b"0" * 65536
        for _ in range(MAX_REQUEST_BYTES // len(block) + 2):
            yield block

    response = requests.post(f"{served.url}/score", data=chunks(), headers={"content-type": "application/json"},
                             timeout=60)
    assert response.status_code == 413 and response.json()["reason"] == "too_large"


def test_a_file_url_is_not_fetched(served):
    """A text field named `audio` is content, never a URL the server would go and fetch."""
    response = requests.post(f"{served.url}/score", data={"machine_type": "fan", "audio": f"{served.url}/livez"},
                             timeout=60)
    assert response.status_code == 415 and response.json()["reason"] == "not_audio"


# -- the batch endpoint --------------------------------------------------------------------------------


def test_batch_scores_each_clip_and_refuses_only_the_bad_ones(served):
    fan, pump = load_audio(served.clips["fan"], SR), load_audio(served.clips["pump"], SR)
    clips = [
        {"id": "fan-b64", "machine_type": "fan", "audio_base64": base64.b64encode(served.clips["fan"].read_bytes()).decode()},
        {"id": "pump-array", "machine_type": "pump", "waveform": pump.tolist(), "sample_rate": SR},
        {"id": "valve", "machine_type": "valve", "waveform": fan.tolist()},
        {"id": "short", "machine_type": "fan", "waveform": fan[:100].tolist()},
        {"id": "below-floor", "machine_type": "fan", "waveform": fan[: SR // 10].tolist()},
        {"id": "fan-8k", "machine_type": "fan", "waveform": resample(fan, SR, 8000).tolist(), "sample_rate": 8000},
    ]
    response = requests.post(f"{served.url}/score_batch", json={"clips": clips}, timeout=60)
    assert response.status_code == 200, response.text
    results = {r["id"]: r for r in response.json()}
    assert list(results) == [c["id"] for c in clips]  # one result per clip, in order
    assert results["fan-b64"]["ok"] and results["fan-b64"]["result"]["score"] == pytest.approx(
        _expected_score(served, "fan", fan), rel=1e-4)
    assert results["pump-array"]["ok"] and results["pump-array"]["result"]["score"] == pytest.approx(
        _expected_score(served, "pump", pump), rel=1e-4)
    assert results["pump-array"]["result"]["model_name"] == "asd-pump"
    assert (results["valve"]["ok"], results["valve"]["status"], results["valve"]["reason"]) == (
        False, 404, "unknown_machine_type")
    assert (results["short"]["ok"], results["short"]["status"], results["short"]["reason"]) == (False, 422, "too_short")
    # long enough for serving.min_seconds, not for the detector: refused up front, the batch still scored
    assert (results["below-floor"]["ok"], results["below-floor"]["status"], results["below-floor"]["reason"]) == (
        False, 422, "too_short")
    assert "0.161 s" in results["below-floor"]["error"]
    assert results["fan-8k"]["result"]["notes"] == ["resampled from 8000 Hz to 16000 Hz"]


def test_batch_refuses_a_malformed_body(served):
    bad = requests.post(f"{served.url}/score_batch", data=b"{nope", headers={"content-type": "application/json"},
                        timeout=30)
    assert bad.status_code == 400
    form = requests.post(f"{served.url}/score_batch", data={"clips": "x"}, timeout=30)
    assert form.status_code == 400 and "application/json" in form.text


def test_concurrent_requests_are_batched_together(served):
    """BentoML's adaptive batching gathers clips of concurrent requests into one call."""
    body = {"clips": [{"machine_type": "fan", "audio_base64": base64.b64encode(served.clips["fan"].read_bytes()).decode()}]}

    def batch_histogram() -> tuple[float, float]:
        text = requests.get(f"{served.url}/metrics", timeout=10).text
        return (_metric(text, "bentoml_service_adaptive_batch_size_sum", method_name="score_batch"),
                _metric(text, "bentoml_service_adaptive_batch_size_count", method_name="score_batch"))

    expected = _expected_score(served, "fan", load_audio(served.clips["fan"], SR))
    sum_before, count_before = batch_histogram()
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: requests.post(f"{served.url}/score_batch", json=body, timeout=120), range(48)))
    assert all(r.status_code == 200 for r in responses)
    assert all(r.json()[0]["result"]["score"] == pytest.approx(expected, rel=1e-4) for r in responses)
    sum_after, count_after = batch_histogram()
    requests_batched, batches = sum_after - sum_before, count_after - count_before
    assert requests_batched == 48
    assert batches < 48, "no two concurrent requests were ever scored in one batch"


# -- metrics ------------------------------------------------------------------------------------------


def test_metrics_have_a_score_histogram_per_machine_type(served):
    _post_wav(served.url, "pump", served.clips["pump"].read_bytes()).raise_for_status()
    _post_wav(served.url, "fan", b"not audio")
    text = requests.get(f"{served.url}/metrics", timeout=10).text
    for mt in ("fan", "pump"):
        count = _metric(text, "asdflow_anomaly_score_count", machine_type=mt)
        assert count >= 1
        assert _metric(text, "asdflow_anomaly_score_bucket", machine_type=mt, le="+Inf") == count
        assert _metric(text, "asdflow_champion_version", machine_type=mt) >= 1
    assert 'asdflow_anomaly_score_bucket{le="' in text
    assert _metric(text, "asdflow_refused_clips_total", reason="not_audio") >= 1
    assert _metric(text, "bentoml_service_request_total", endpoint="/score", http_response_code="200") >= 1


def test_models_and_refusals_show_no_server_paths_and_no_echoed_payload(served):
    text = requests.get(f"{served.url}/models", timeout=5).text
    assert str(served.log.parent) not in text and "sqlite:///.../mlflow.db" in text
    huge = "x" * 100_000  # a machine type is a name, not a payload to echo back
    answer = requests.post(f"{served.url}/score", files={"audio": ("a.wav", _wav(np.zeros(SR)), "audio/wav")},
                           data={"machine_type": huge}, timeout=30)
    assert answer.status_code == 404 and len(answer.text) < 1000 and "(100000 chars)" in answer.json()["error"]


def test_two_audio_parts_in_one_score_request_are_refused(served):
    clip = served.clips["fan"].read_bytes()
    answer = requests.post(f"{served.url}/score", files=[("audio", ("a.wav", clip, "audio/wav")),
                                                         ("audio", ("b.wav", clip, "audio/wav"))],
                           data={"machine_type": "fan"}, timeout=30)
    assert answer.status_code == 400 and "two `audio` parts" in answer.text


def test_unknown_paths_share_one_metric_label_and_still_get_404(served):
    before = len(requests.get(f"{served.url}/metrics", timeout=10).text)
    for i in range(40):
        assert requests.get(f"{served.url}/probe-{i}-{os.urandom(4).hex()}", timeout=5).status_code == 404
    text = requests.get(f"{served.url}/metrics", timeout=10).text
    assert "probe-" not in text
    assert _metric(text, "bentoml_service_request_total", endpoint="/__unknown__", http_response_code="404") >= 40
    assert len(text) < before + 20_000  # one label's worth of series, not forty


# -- hot reload (last: it changes the fan champion) --------------------------------------------------------


def test_a_new_champion_is_served_without_a_restart(served):
    from asdflow.registry.models import promote, register_detector

    clip = served.clips["fan"].read_bytes()
    old = _post_wav(served.url, "fan", clip).json()
    assert old["model_version"] == "1"
    new_detector = load_detector(served.spare_fan_dir)
    expected_new = float(new_detector.score_waveform(load_audio(served.clips["fan"], SR)))
    assert expected_new != pytest.approx(old["score"], rel=1e-3)  # the two versions are told apart by score too

    registered = register_detector(served.spare_fan_dir, "fan", served.config)
    promote("fan", registered.version, "1", served.config)
    pid = served.process.pid
    not_ready: list[int] = []

    def new_version_served():
        ready = requests.get(f"{served.url}/readyz", timeout=5).status_code
        if ready != 200:
            not_ready.append(ready)
        body = _post_wav(served.url, "fan", clip).json()
        return body if body["model_version"] == registered.version else None

    body = _poll(new_version_served, RELOAD_DEADLINE_S, "new fan champion served", served.process, served.log)
    assert served.process.pid == pid and served.process.poll() is None  # the same server, never restarted
    assert not_ready == []  # it stayed ready while swapping
    assert body["score"] == pytest.approx(expected_new, rel=1e-4)
    assert body["threshold"] == pytest.approx(new_detector.threshold)
    models = requests.get(f"{served.url}/models", timeout=5).json()["models"]
    assert models["fan"]["version"] == registered.version and models["pump"]["version"] == "1"
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    assert _metric(metrics, "asdflow_champion_version", machine_type="fan") == float(registered.version)


def test_no_request_of_this_module_got_a_500(served):
    text = requests.get(f"{served.url}/metrics", timeout=10).text
    errors = [line for line in text.splitlines()
              if line.startswith("bentoml_service_request_total{") and 'http_response_code="5' in line
              and 'http_response_code="503"' not in line and not line.endswith(" 0.0")]
    assert errors == []
    assert _metric(text, "bentoml_service_request_total", endpoint="/score", http_response_code="400") >= 10


# -- the command line (no server) ----------------------------------------------------------------------


def test_serve_command_binds_loopback_unless_told_otherwise(tmp_path):
    import typer
    from typer.testing import CliRunner

    from asdflow.cli_serve import SERVICE_TARGET, serve

    app = typer.Typer()
    app.command()(serve)
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump({"serving": {"port": 3123}}))
    runner = CliRunner()
    default = runner.invoke(app, ["--config", str(config_file), "--profile", "tiny", "--print"])
    assert default.exit_code == 0, default.output
    assert f"serve {SERVICE_TARGET} --host 127.0.0.1 --port 3123 --working-dir {REPO_ROOT}" in default.output
    assert f"ASDFLOW_CONFIG={config_file.resolve()}" in default.output and "ASDFLOW_PROFILE=tiny" in default.output
    wide = runner.invoke(app, ["--config", str(config_file), "--host", "0.0.0.0", "--port", "8080", "--print",
                               "--tracking-uri", "http://mlflow:5000"])
    assert "--host 0.0.0.0 --port 8080" in wide.output and "MLFLOW_TRACKING_URI=http://mlflow:5000" in wide.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("serving: {port: not-a-port}\n")
    failed = runner.invoke(app, ["--config", str(broken), "--print"])
    assert failed.exit_code != 0 and "serving.port" in str(failed.exception)
