"""TWFR speed: fit with and without the label-free selection, and in-process scoring throughput.

On the real valve first-shot split (52 training normals):
- fit seconds with `selection.strategy: proxy` (the default) and with `fixed`, median of --rounds;
- scoring throughput of `score_waveforms` on ten-second clips (the valve test clips,
  waveforms already in memory: log-mel + GWRP + scorer), for 1 and 2 torch threads,
  beside a reference run of the log-mel alone in the same process (the ratio says how
  much of the time the detector adds to the features).

    nice -n 5 .venv/bin/python benchmarks/twfr_speed.py [--rounds 3] [--clips 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, real_valve_split, time_rounds, write_results  # noqa: E402

from asdflow.config import load_config  # noqa: E402
from asdflow.data.audio import load_audio  # noqa: E402
from asdflow.detectors import make_detector  # noqa: E402
from asdflow.features.logmel import LogMelExtractor  # noqa: E402


def timed(fn, rounds: int) -> list[float]:
    return time_rounds(fn, rounds, warmup=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clips", type=int, default=128, help="ten-second clips scored per throughput round")
    args = parser.parse_args()
    train, test = real_valve_split()
    rows, results = [], {}
    for strategy in ("proxy", "fixed"):
        cfg = load_config(profile="full", overrides={"progress": False, "detector": {
            "family": "twfr", "twfr": {"selection": {"strategy": strategy}}}})
        seconds = timed(lambda: make_detector(cfg.detector, cfg.features).fit(train, progress=False), args.rounds)
        results[f"fit_{strategy}_s"] = seconds
        rows.append({"what": f"fit, selection {strategy} ({len(train)} clips)", "median": statistics.median(seconds),
                     "unit": "s", "ratio": ""})
    waves = [np.resize(load_audio(r.path), 160000).astype(np.float32) for r in test.records]
    waves = (waves * (args.clips // len(waves) + 1))[: args.clips]
    for threads in (1, 2):
        cfg = load_config(profile="full", overrides={"progress": False, "features": {"torch_threads": threads},
                                                     "detector": {"family": "twfr"}})
        detector = make_detector(cfg.detector, cfg.features)
        detector.fit(train, progress=False)
        extractor = LogMelExtractor(cfg.features)
        extractor.batch(waves[:8])
        detector.score_waveforms(waves[:8])  # warm-up
        reference = timed(lambda: extractor.batch(waves), args.rounds)
        scoring = timed(lambda: [detector.score_waveforms(waves[i : i + 32]) for i in range(0, len(waves), 32)],
                        args.rounds)
        clips_per_s = len(waves) / statistics.median(scoring)
        results[f"score_{threads}_threads"] = {"seconds": scoring, "logmel_seconds": reference,
                                               "clips_per_s": clips_per_s, "chosen": detector.pooling_summary()}
        rows.append({"what": f"score 10 s clips, {threads} torch thread(s) ({detector.pooling_summary()})",
                     "median": clips_per_s, "unit": "clips/s",
                     "ratio": f"{statistics.median(scoring) / statistics.median(reference):.2f}x log-mel alone"})
    path = write_results("twfr_speed", {"command": "python benchmarks/twfr_speed.py " + " ".join(sys.argv[1:]),
                                        "rounds": args.rounds, "clips": args.clips, **results})
    print_table(rows, ["what", "median", "unit", "ratio"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
