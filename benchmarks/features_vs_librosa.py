"""Log-mel speed: asdflow's extractor vs librosa on the same clips, in one run.

Both compute the baseline log-mel (n_fft 1024, hop 512, 128 mels, power 2,
10*log10(mel + 1e-8)) with matched settings (HTK mel scale, no filter
normalisation, centred frames, reflect padding: torchaudio's defaults). The
clips are decoded once beforehand, so only feature computation is timed;
decoding is the same soundfile call for both and is reported apart.

Rounds are interleaved (every method once per round, in rotating order) so
that background load on a shared machine hits every method alike; the table
gives medians over rounds. The two outputs are checked to agree (max |dB|).

    .venv/bin/python benchmarks/features_vs_librosa.py [--rounds 5] [--clips 200]

Writes benchmarks/results/features_vs_librosa.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_REAL_DATA, print_table, summarise, write_results  # noqa: E402

VALVE_TEST = SHARED_REAL_DATA / "dcase2023t2_dev" / "valve" / "test"
TARGET_RATIO = 3.0


def load_clips(n_clips: int, sample_rate: int, seed: int = 0) -> tuple[list[np.ndarray], str, float]:
    """The real valve test clips, or white-noise stand-ins when the real data is absent."""
    from asdflow.data.audio import load_audio

    paths = sorted(VALVE_TEST.glob("*.wav"))[:n_clips] if VALVE_TEST.is_dir() else []
    if paths:
        start = time.perf_counter()
        waves = [load_audio(p, target_sr=sample_rate) for p in paths]
        return waves, f"real: {len(paths)} clips from {VALVE_TEST.resolve()}", time.perf_counter() - start
    rng = np.random.default_rng(seed)
    waves = [(0.1 * rng.standard_normal(10 * sample_rate)).astype(np.float32) for _ in range(n_clips)]
    return waves, f"SYNTHETIC FALLBACK: {n_clips} x 10 s numpy white noise ({VALVE_TEST} absent)", 0.0


def _librosa_logmel(y: np.ndarray, config) -> np.ndarray:
    """librosa's log-mel of one clip (1-D) or equal-length clips (2-D), with torchaudio's settings."""
    import librosa

    power = librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels,
        power=config.power, htk=True, norm=None, center=True, pad_mode="reflect",
    )
    return (10.0 * np.log10(power + config.log_offset)).astype(np.float32)


def librosa_logmel(waves: list[np.ndarray], config) -> list[np.ndarray]:
    """librosa as it is usually called: one clip at a time."""
    return [_librosa_logmel(wav, config) for wav in waves]


def librosa_logmel_stacked(waves: list[np.ndarray], config, chunk: int = 8) -> list[np.ndarray]:
    """librosa's fastest form: equal-length clips as one 2-D array (a fairer, harder baseline)."""
    out: list[np.ndarray] = []
    for start in range(0, len(waves), chunk):
        out.extend(_librosa_logmel(np.stack(waves[start : start + chunk]), config))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()

    import torch

    from asdflow.config import FeatureConfig
    from asdflow.features.logmel import LogMelExtractor

    if args.threads:
        torch.set_num_threads(args.threads)
    config = FeatureConfig()
    waves, source, load_seconds = load_clips(args.clips, config.sample_rate)
    print(f"clips: {source}")
    if load_seconds:
        print(f"decoding them once (soundfile, not timed below): {1000 * load_seconds / len(waves):.2f} ms/clip")
    print(f"load average at start: {_load_average()}")
    print(f"torch threads: {torch.get_num_threads()}, rounds: {args.rounds} (+1 warm-up)")

    extractor = LogMelExtractor(config)
    methods: dict[str, Callable[[], list[np.ndarray]]] = {
        "asdflow LogMelExtractor.batch": lambda: extractor.batch(waves),
        "librosa (per clip)": lambda: librosa_logmel(waves, config),
        "librosa (stacked 2-D, 8 clips)": lambda: librosa_logmel_stacked(waves, config),
    }

    outputs = {name: fn() for name, fn in methods.items()}  # warm-up, and the outputs to compare
    reference = np.stack(outputs["librosa (per clip)"])
    max_diff_db = {name: float(np.abs(np.stack(out) - reference).max()) for name, out in outputs.items()}
    del outputs

    # Wall clock is the headline; process CPU time is kept too, as it moves less with other
    # processes' load on a shared machine (it counts all threads of this process).
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for round_index in range(args.rounds):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            methods[name]()
            seconds[name].append(time.perf_counter() - wall)
            cpu_seconds[name].append(time.process_time() - cpu)

    librosa_rate = len(waves) / summarise(seconds["librosa (per clip)"])["median"]
    rows, results = [], {}
    for name in names:
        stats = summarise(seconds[name])
        cpu_ms = 1000 * summarise(cpu_seconds[name])["median"] / len(waves)
        rate = len(waves) / stats["median"]
        results[name] = {
            "seconds": seconds[name],
            "cpu_seconds": cpu_seconds[name],
            "median_seconds": stats["median"],
            "median_cpu_ms_per_clip": cpu_ms,
            "clips_per_second": rate,
            "ratio_vs_librosa": rate / librosa_rate,
            "max_abs_diff_db_vs_librosa": max_diff_db[name],
        }
        rows.append(
            {
                "method": name,
                "median s": stats["median"],
                "min s": stats["min"],
                "max s": stats["max"],
                "clips/s": rate,
                "x librosa": rate / librosa_rate,
                "CPU ms/clip": cpu_ms,
                "max |dB diff|": max_diff_db[name],
            }
        )
    print_table(rows)

    ratio = results["asdflow LogMelExtractor.batch"]["ratio_vs_librosa"]
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"asdflow / librosa (per clip) = {ratio:.2f}x: {verdict} the {TARGET_RATIO:.0f}x aim")
    path = write_results(
        "features_vs_librosa",
        {
            "clips": len(waves),
            "source": source,
            "synthetic_fallback": source.startswith("SYNTHETIC"),
            "decode_seconds_once": load_seconds,
            "rounds": args.rounds,
            "load_average_at_start": _load_average(),
            "torch_threads": torch.get_num_threads(),
            "settings": config.model_dump(),
            "librosa_settings": "htk=True, norm=None, center=True, pad_mode='reflect'",
            "methods": results,
            "ratio_asdflow_vs_librosa": ratio,
            "target_ratio": TARGET_RATIO,
        },
    )
    print(f"wrote {path}")
    return 0


def _load_average() -> list[float] | None:
    # Other work on a shared 2-core machine slows every method; the load says how busy it was.
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
