"""Serving benchmark: latency of one 10 s clip, and clips per second under concurrent clients.

    .venv/bin/python benchmarks/serving.py [--score mahalanobis mse] [--quick]

Sets up everything for real in a temporary folder: a synthetic fan dataset of 10 s clips,
the DCASE baseline autoencoder trained on it, registered in an MLflow SQLite store and
promoted to @champion; then `asdflow serve`'s command starts BentoML on 127.0.0.1 (a free
port) and this script calls it over HTTP:

- latency: one client, one 10 s clip per request, POST /score as a multipart wav upload
  (and, fewer rounds, as a JSON float array), p50/p90/p99 in ms;
- throughput: N concurrent clients, a fixed number of clips each run, through
  POST /score_batch (BentoML adaptive batching; clips as base64 wav or as float arrays)
  and POST /score (no batching); clips/s, request p50/p99 and the mean adaptive batch
  size the server reported in /metrics.

The clients run on the same machine as the server and take CPU from it; request bodies
are encoded once, before timing. Results: benchmarks/results/serving.json, and a table.
One run per detector score kind given (the Mahalanobis score is the baseline's default).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import requests
import soundfile as sf
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, print_table, write_results  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

MACHINE = "fan"
CLIP_SECONDS = 10.0
SAMPLE_RATE = 16000
READY_DEADLINE_S = 180


# -- setup --------------------------------------------------------------------------------


def prepare_store(work: Path, score: str, serving: dict[str, Any]) -> Path:
    """Synthesize 10 s fan clips, train the baseline, register it, promote it; return the serving config file."""
    from asdflow.config import load_config
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.data.synth import synthesize_dataset
    from asdflow.jobs import train_detector
    from asdflow.registry.models import promote, register_detector

    store = work / f"store_{score}"
    shutil.rmtree(store, ignore_errors=True)  # a kept --workdir starts from an empty store
    tracking = {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}", "artifact_location": str(store / "artifacts")}
    overrides = {
        "progress": False,
        "synth": {"machine_types": [MACHINE], "duration": CLIP_SECONDS, "n_train_source": 12, "n_train_target": 3,
                  "n_test_per_condition": 1, "n_supplemental_clean": 0, "n_supplemental_noise": 0},
        "detector": {"baseline_ae": {"score": score}},
        "tracking": tracking,
    }
    cfg = load_config(profile="tiny", overrides=overrides)
    data = work / "data"
    if not (data / MACHINE).is_dir():
        synthesize_dataset(cfg.synth, data, progress=False)
    manifest = build_manifest(data, progress=False)
    trained = train_detector(manifest, MACHINE, cfg, work / f"detector_{score}")
    registered = register_detector(trained.detector_dir, MACHINE, cfg)
    promote(MACHINE, registered.version, None, cfg)
    config_file = work / f"serving_{score}.yaml"
    config_file.write_text(yaml.safe_dump({
        "profile": "tiny",
        "tracking": tracking,
        "serving": {"machine_types": [MACHINE], "reload_interval_s": 60.0, "max_latency_ms": 20000, **serving},
    }))
    return config_file


@contextmanager
def bentoml_server(config_file: Path, log_file: Path) -> Iterator[tuple[str, float]]:
    """`asdflow serve`'s command on a free port of 127.0.0.1; yields (url, seconds until ready).

    asdflow.processes.running stops it on exit, BentoML's workers (process groups of their own) included.
    """
    from asdflow.cli_serve import serve_invocation
    from asdflow.config import load_config
    from asdflow.processes import free_port, running, wait_ready

    run = serve_invocation(load_config(config_file), config_file, None, "127.0.0.1", free_port(),
                           project_dir=config_file.parent, service_root=REPO_ROOT)
    with running(run.argv, env={**os.environ, **run.env}, cwd=run.cwd, log_path=log_file) as process:
        try:
            ready_s = wait_ready(run.url, process, READY_DEADLINE_S)
        except Exception as err:
            raise RuntimeError(f"{err}; see {log_file}") from None
        yield run.url, ready_s


# -- requests -------------------------------------------------------------------------------


def clip_bodies(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    # a machine-like clip: a hum with harmonics under noise (content does not change the cost)
    t = np.arange(int(CLIP_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    wave = (0.2 * np.sin(2 * np.pi * 120 * t) + 0.05 * np.sin(2 * np.pi * 360 * t)
            + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    wav = buf.getvalue()
    return {"wave": wave, "wav": wav, "b64": base64.b64encode(wav).decode("ascii"),
            "json_single": json.dumps({"machine_type": MACHINE, "waveform": wave.tolist(),
                                       "sample_rate": SAMPLE_RATE}).encode()}


def post_score_wav(session: requests.Session, url: str, wav: bytes) -> requests.Response:
    return session.post(url + "/score", files={"audio": ("clip.wav", wav, "audio/wav")},
                        data={"machine_type": MACHINE}, timeout=120)


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "n": int(ms.size)}


def single_clip_latency(url: str, bodies: dict[str, Any], rounds: int, json_rounds: int) -> list[dict[str, Any]]:
    session = requests.Session()
    rows = []
    for _ in range(5):  # connection and first-request costs out of the figures
        post_score_wav(session, url, bodies["wav"]).raise_for_status()
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        post_score_wav(session, url, bodies["wav"]).raise_for_status()
        timings.append(time.perf_counter() - start)
    rows.append({"request": "/score wav upload (10 s, PCM16)", **percentiles(timings)})
    timings = []
    for _ in range(json_rounds):
        start = time.perf_counter()
        session.post(url + "/score", data=bodies["json_single"], headers={"content-type": "application/json"},
                     timeout=120).raise_for_status()
        timings.append(time.perf_counter() - start)
    rows.append({"request": "/score JSON float array (10 s)", **percentiles(timings)})
    return rows


def batch_sizes(url: str) -> tuple[float, float]:
    """(sum, count) of BentoML's adaptive batch size histogram for score_batch."""
    text = requests.get(url + "/metrics", timeout=10).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("bentoml_service_adaptive_batch_size_") and 'method_name="score_batch"' in line:
            value = float(line.rsplit(" ", 1)[1])
            if re.match(r"bentoml_service_adaptive_batch_size_sum\b", line):
                total += value
            elif re.match(r"bentoml_service_adaptive_batch_size_count\b", line):
                count += value
    return total, count


def throughput(url: str, bodies: dict[str, Any], mode: str, clips_per_request: int, clients: int,
               total_clips: int) -> dict[str, Any]:
    """`total_clips` clips through `clients` concurrent clients; bounded: n requests, each once."""
    n_requests = max(1, total_clips // clips_per_request)
    if mode == "batch_b64":
        item = {"machine_type": MACHINE, "audio_base64": bodies["b64"]}
        body = json.dumps({"clips": [item] * clips_per_request}).encode()
    elif mode == "batch_json":
        item = {"machine_type": MACHINE, "waveform": bodies["wave"].tolist(), "sample_rate": SAMPLE_RATE}
        body = json.dumps({"clips": [item] * clips_per_request}).encode()
    else:
        body = None
    local = threading.local()

    def one(_: int) -> tuple[int, float]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        if body is None:
            response = post_score_wav(session, url, bodies["wav"])
        else:
            response = session.post(url + "/score_batch", data=body, headers={"content-type": "application/json"},
                                    timeout=300)
            if response.status_code == 200 and not all(r["ok"] for r in response.json()):
                return -1, time.perf_counter() - start
        return response.status_code, time.perf_counter() - start

    before = batch_sizes(url)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(one, range(n_requests)))
    elapsed = time.perf_counter() - start
    after = batch_sizes(url)
    codes = [code for code, _ in outcomes]
    ok = codes.count(200)
    batches = after[1] - before[1]
    lat = percentiles([s for _, s in outcomes])
    return {
        "endpoint": "/score" if body is None else "/score_batch",
        "clip_encoding": {"batch_b64": "base64 wav", "batch_json": "float array", "score_wav": "multipart wav"}[mode],
        "clips_per_request": clips_per_request,
        "clients": clients,
        "clips": ok * clips_per_request,
        "seconds": elapsed,
        "clips_per_s": ok * clips_per_request / elapsed,
        "request_p50_ms": lat["p50_ms"],
        "request_p99_ms": lat["p99_ms"],
        # BentoML counts requests per batch; a request's clips all go into the same batch (up to the cap)
        "requests_per_batch": (after[0] - before[0]) / batches if batches else None,
        "failed_requests": len(codes) - ok,
        "status_codes": {str(c): codes.count(c) for c in sorted(set(codes))},
    }


# -- main -------------------------------------------------------------------------------------


def in_process_rate(detector_dir: Path, wave: np.ndarray, batch: int = 32, rounds: int = 3) -> float:
    """Clips/s of the detector alone (score_waveforms on a batch, no HTTP): the ceiling the server works under."""
    from asdflow.detectors.base import load_detector

    detector = load_detector(detector_dir)
    clips = [wave] * batch
    detector.score_waveforms(clips[:2])
    start = time.perf_counter()
    for _ in range(rounds):
        detector.score_waveforms(clips)
    return batch * rounds / (time.perf_counter() - start)


def run_kind(work: Path, score: str, quick: bool, serving: dict[str, Any]) -> dict[str, Any]:
    bodies = clip_bodies()
    started = time.perf_counter()
    config_file = prepare_store(work, score, serving)
    setup_s = time.perf_counter() - started
    with bentoml_server(config_file, work / f"server_{score}.log") as (url, ready_s):
        latency = single_clip_latency(url, bodies, rounds=30 if quick else 200, json_rounds=10 if quick else 30)
        total = 96 if quick else 480
        plan = [
            ("score_wav", 1, 4),
            ("batch_b64", 1, 8),
            ("batch_b64", 1, 32),
            ("batch_b64", 8, 4),
            ("batch_b64", 32, 2),
            ("batch_json", 1, 8),
        ]
        # measured around the HTTP runs (server idle meanwhile): other work on the machine moves both alike
        ceiling = [in_process_rate(work / f"detector_{score}", bodies["wave"])]
        rows = []
        for mode, per_request, clients in plan:
            clips = total if mode != "batch_json" else max(32, total // 4)
            throughput(url, bodies, mode, per_request, clients, min(clips, 64))  # warm the dispatcher
            rows.append(throughput(url, bodies, mode, per_request, clients, clips))
        ceiling.append(in_process_rate(work / f"detector_{score}", bodies["wave"]))
        models = requests.get(url + "/models", timeout=10).json()
    return {"score": score, "serving": serving, "setup_s": setup_s, "server_ready_s": ready_s, "latency": latency,
            "throughput": rows, "detector_in_process_clips_per_s": ceiling, "models": models}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score", nargs="+", default=["mahalanobis", "mse"], choices=["mahalanobis", "mse"])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store and logs here")
    parser.add_argument("--workers", type=int, default=None, help="server processes (default: serving.workers)")
    parser.add_argument("--threads", type=int, default=None, help="scoring threads per worker (default: serving.threads)")
    parser.add_argument("--max-batch-size", type=int, default=None, help="adaptive batching cap (default: config)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="asdflow-serving-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()
        serving = {k: v for k, v in (("workers", args.workers), ("threads", args.threads),
                                     ("max_batch_size", args.max_batch_size)) if v is not None}
        runs = [run_kind(work, score, args.quick, serving) for score in args.score]
        load_after = os.getloadavg()

    payload = {
        "clip_seconds": CLIP_SECONDS,
        "sample_rate": SAMPLE_RATE,
        "detector": "baseline_ae (DCASE baseline autoencoder, 128 mels x 5 frames)",
        "quick": args.quick,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "runs": runs,
    }
    path = write_results("serving", payload)
    for run in runs:
        print(f"\nscore = {run['score']}, serving {run['serving'] or 'defaults'}: "
              f"server ready {run['server_ready_s']:.1f} s after start; the detector alone (32-clip batches, "
              f"no HTTP): {', '.join(f'{r:.1f}' for r in run['detector_in_process_clips_per_s'])} clips/s")
        print_table(run["latency"], ["request", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "n"], digits=4)
        print()
        print_table(run["throughput"], ["endpoint", "clip_encoding", "clips_per_request", "clients", "clips",
                                        "clips_per_s", "request_p50_ms", "request_p99_ms", "requests_per_batch",
                                        "failed_requests"], digits=4)
    print(f"\nload average before/after: {load_before} / {load_after}; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
