"""Serving under a hostile mix: many clients, a tenth of the requests bad on purpose.

    .venv/bin/python benchmarks/serving_hostile.py [--clients 50] [--seconds 60] [--bad 0.1]

The same real setup as benchmarks/serving.py (a baseline detector on 10 s fan clips, registered and
promoted in an MLflow SQLite store, `asdflow serve`'s command on 127.0.0.1). Then `--clients` threads
send requests for `--seconds`: good ones (a 10 s wav to /score, a base64 clip to /score_batch) and,
with probability `--bad`, one of the hostile kinds the serving probe used: odd sample rates (16001,
30001 Hz), an all-zero multi-channel FLAC that decodes to far more than it weighs, a body above the
request cap, bad base64, a random unknown path, a 100 KB machine type, two audio parts. Beside it a
sampler reads the resident memory of the server's process tree every 0.25 s.

Reported: requests and statuses per kind, 5xx other than the documented 503 shedding (goal: 0),
good requests that failed (goal: 0), p50/p99 of the good ones, and the peak RSS of the server's
processes (goal: under 1.5 GB). Results: benchmarks/results/serving_hostile.json and a table.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import requests
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_results  # noqa: E402
from serving import MACHINE, bentoml_server, clip_bodies, prepare_store  # noqa: E402


def hostile_bodies() -> dict[str, tuple[str, dict]]:
    """kind -> (path, requests.post keyword arguments) of each bad request."""
    zeros = io.BytesIO()
    sf.write(zeros, np.zeros((96000 * 25, 4), dtype=np.float32), 96000, format="FLAC")  # ~100 KB, 38 MB decoded
    odd = {"machine_type": MACHINE, "waveform": [0.0] * 16001}
    return {
        "rate_16001": ("/score", {"json": {**odd, "sample_rate": 16001}}),
        "rate_30001": ("/score", {"json": {**odd, "sample_rate": 30001}}),
        "zero_flac": ("/score", {"files": {"audio": ("z.flac", zeros.getvalue(), "audio/flac")},
                                 "data": {"machine_type": MACHINE}}),
        "huge_body": ("/score_batch", {"data": b"[" + b"0.0," * 8_000_000 + b"0]",
                                       "headers": {"content-type": "application/json"}}),
        "bad_base64": ("/score_batch", {"json": {"clips": [{"machine_type": MACHINE, "audio_base64": "%%%"}]}}),
        "unknown_path": ("/nowhere", {}),
        "huge_machine_type": ("/score", {"json": {"machine_type": "x" * 100_000, "waveform": [0.0] * 16000}}),
        "two_audio_parts": ("/score", {"files": [("audio", ("a.wav", b"RIFF", "audio/wav")),
                                                 ("audio", ("b.wav", b"RIFF", "audio/wav"))],
                                       "data": {"machine_type": MACHINE}}),
    }


def rss_sampler(pid: int, stop: threading.Event, peak: list[float], by_process: dict[str, float]) -> None:
    """Peak RSS of the server's process tree, and of each process in it (which one grows)."""
    import psutil

    while not stop.is_set():
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
            sizes = {f"{p.pid} {' '.join(p.cmdline()[1:3])[:60]}": p.memory_info().rss / 2**20 for p in processes}
            peak[0] = max(peak[0], sum(sizes.values()))
            for name, mb in sizes.items():
                by_process[name] = round(max(by_process.get(name, 0.0), mb), 1)
        except psutil.Error:
            pass
        stop.wait(0.25)


def client(url: str, bodies: dict, hostile: dict, bad: float, until: float, seed: int, log: list) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    kinds = list(hostile)
    while time.monotonic() < until:
        if rng.random() < bad:
            kind = rng.choice(kinds)
            path, kwargs = hostile[kind]
            if kind == "unknown_path":
                path = f"/probe-{rng.getrandbits(32):08x}"
            method = session.get if kind == "unknown_path" else session.post
        elif rng.random() < 0.5:
            kind, path, method = "good_score", "/score", session.post
            kwargs = {"files": {"audio": ("clip.wav", bodies["wav"], "audio/wav")}, "data": {"machine_type": MACHINE}}
        else:
            kind, path, method = "good_batch", "/score_batch", session.post
            kwargs = {"json": {"clips": [{"machine_type": MACHINE, "audio_base64": bodies["b64"]}]}}
        started = time.perf_counter()
        try:
            status = method(url + path, timeout=120, **kwargs).status_code
        except requests.RequestException as err:
            status = f"error: {type(err).__name__}"
        log.append((kind, status, time.perf_counter() - started))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bad", type=float, default=0.1, help="share of hostile requests")
    args = parser.parse_args(argv)
    bodies = clip_bodies()
    hostile = hostile_bodies()
    with tempfile.TemporaryDirectory(prefix="asdflow-hostile-") as tmp:
        work = Path(tmp)
        config_file = prepare_store(work, "mse", {})
        with bentoml_server(config_file, work / "server.log") as (url, ready_s):
            server_pid = next(p.pid for p in __import__("psutil").process_iter(["cmdline"])
                              if "serving.service:AnomalyDetector" in " ".join(p.info["cmdline"] or [])
                              and url.rsplit(":", 1)[1] in " ".join(p.info["cmdline"] or []))
            stop, peak, log, by_process = threading.Event(), [0.0], [], {}
            sampler = threading.Thread(target=rss_sampler, args=(server_pid, stop, peak, by_process), daemon=True)
            sampler.start()
            until = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client, args=(url, bodies, hostile, args.bad, until, i, log))
                       for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stop.set()
            log_text = (work / "server.log").read_text(errors="replace")
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for kind, status, _ in log:
        by_kind[kind][str(status)] += 1
    good = [s for k, st, s in log if k.startswith("good") and st == 200]
    good_failed = sum(1 for k, st, _ in log if k.startswith("good") and st != 200 and st != 503)
    shed = sum(1 for k, st, _ in log if st == 503)
    undocumented_5xx = sum(1 for _, st, _ in log if isinstance(st, int) and st >= 500 and st != 503)
    rows = [{"kind": k, "requests": sum(c.values()), "statuses": ", ".join(f"{s}: {n}" for s, n in sorted(c.items()))}
            for k, c in sorted(by_kind.items())]
    summary = {
        "clients": args.clients, "seconds": args.seconds, "bad_share": args.bad, "requests": len(log),
        "good_ok": len(good), "good_failed_not_shed": good_failed, "shed_503": shed,
        "undocumented_5xx": undocumented_5xx,
        "good_p50_ms": round(float(np.percentile(good, 50)) * 1000, 1) if good else None,
        "good_p99_ms": round(float(np.percentile(good, 99)) * 1000, 1) if good else None,
        "peak_server_rss_mb": round(peak[0], 1), "server_ready_s": round(ready_s, 1),
        "tracebacks_in_log": log_text.count("Traceback (most recent call last)"),
    }
    first = log_text.find("Traceback (most recent call last)")
    summary_extra = {"peak_rss_mb_by_process": by_process, "first_traceback": log_text[max(0, first - 300): first + 3000] if first >= 0 else None}
    path = write_results("serving_hostile", {"command": " ".join(sys.argv), "summary": summary, "by_kind": rows,
                                             **summary_extra})
    print_table(rows)
    print()
    print_table([summary])
    print("\npeak RSS by process (MB):", json.dumps(by_process, indent=1))
    print(f"\nresults in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
