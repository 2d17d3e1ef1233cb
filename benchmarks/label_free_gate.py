"""Does the label-free gate judge real machines as the labelled one does?

On the real valve split and its mirror: each family is fitted once on the training normals, then
judged two ways on the same test split:
- `labelled`: the DCASE official score on the split's labelled test clips (what the gate uses when
  the data has labelled anomalies; here it is the reference, the "oracle" of the label-free gate);
- `simulated`: the gate's label-free evidence (asdflow.evaluation.gate_evidence): the split's normal
  test clips plus anomalies simulated from them, scored with `SimulatedScore`, for several
  simulation seeds (the spread is reported). The labelled anomalies are never looked at.
Then, per dataset and seed, which family each evidence would keep, and how many family pairs the
two evidences order the same way (pairwise agreement).

    nice -n 5 .venv/bin/python benchmarks/label_free_gate.py [--families twfr baseline_ae conditional_ae]
        [--seeds 0 1 2] [--profile demo]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mean_std, print_table, real_valve_split, summarise, write_results  # noqa: E402

from asdflow.config import load_config  # noqa: E402
from asdflow.data.audio import load_audio  # noqa: E402
from asdflow.detectors import make_detector  # noqa: E402
from asdflow.evaluation.gate_evidence import SimulatedScore, simulated_anomalies  # noqa: E402
from asdflow.evaluation.metrics import MAX_FPR, evaluate_scores, ground_truth_from_manifest  # noqa: E402
from asdflow.progress import progress_bar  # noqa: E402

DATASETS = ("valve", "valve_mirror")


def score_waveforms(detector: Any, waveforms: list[np.ndarray], records: list) -> np.ndarray:
    """As the registered model scores: a conditioned family clip by clip with its record, the others in one batch."""
    if getattr(detector, "uses_records", False):
        return np.asarray([detector.score_waveform(w, r) for w, r in zip(waveforms, records)], dtype=np.float64)
    return np.asarray(detector.score_waveforms(waveforms), dtype=np.float64)


def judge(family: str, dataset: str, profile: str, seeds: list[int]) -> dict[str, Any]:
    train, test = real_valve_split(mirror=dataset == "valve_mirror")
    config = load_config(profile=profile, overrides={"progress": False})
    config.detector.family = family
    started = time.perf_counter()
    detector = make_detector(config.detector, config.features, seed=0)
    detector.fit(train, progress=False)
    fit_s = time.perf_counter() - started
    sr = int(detector.features.sample_rate)
    records = [r for r in test.records if r.is_labelled]
    waves = [load_audio(r.path, sr) for r in progress_bar(records, desc=f"{family}/{dataset}: loading", enabled=True)]
    scores = score_waveforms(detector, waves, records)
    labelled = evaluate_scores(ground_truth_from_manifest(test), {r.name: float(s) for r, s in zip(records, scores)})
    normals = [(r, w, s) for r, w, s in zip(records, waves, scores) if r.label == "normal"]
    normal_records = [r for r, _, _ in normals]
    normal_scores = np.asarray([s for _, _, s in normals])
    simulated = {}
    for seed in seeds:
        gate = config.gate.model_copy(update={"seed": seed, "max_simulated_from": len(normals)})
        made_records, made = simulated_anomalies(normal_records, [w for _, w, _ in normals], sr, gate)
        judged = SimulatedScore(normal_records, normal_scores, score_waveforms(detector, made, made_records), MAX_FPR)
        simulated[seed] = judged.official
    return {"family": family, "dataset": dataset, "labelled": float(labelled.overall.official),
            "simulated": simulated, "fit_s": round(fit_s, 1)}


def agreement(results: list[dict[str, Any]], dataset: str, seed: int) -> dict[str, Any]:
    """Which family each evidence keeps, and the share of family pairs both order the same way."""
    rows = [r for r in results if r["dataset"] == dataset]
    by_labelled = max(rows, key=lambda r: r["labelled"])["family"]
    by_simulated = max(rows, key=lambda r: r["simulated"][seed])["family"]
    pairs = list(itertools.combinations(rows, 2))
    same = sum((a["labelled"] - b["labelled"]) * (a["simulated"][seed] - b["simulated"][seed]) > 0 for a, b in pairs)
    return {"dataset": dataset, "seed": seed, "kept (labelled)": by_labelled, "kept (simulated)": by_simulated,
            "pairs ordered alike": f"{same}/{len(pairs)}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["twfr", "baseline_ae", "conditional_ae"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--profile", default="demo")
    args = parser.parse_args()
    results = [judge(f, d, args.profile, args.seeds) for d in DATASETS for f in args.families]
    table = [{"dataset": r["dataset"], "family": r["family"], "labelled official": r["labelled"],
              "simulated official (mean ± std over seeds)": mean_std(summarise(r["simulated"].values())),
              "fit s": r["fit_s"]} for r in results]
    print_table(table)
    print()
    decisions = [agreement(results, d, s) for d in DATASETS for s in args.seeds]
    print_table(decisions)
    path = write_results("label_free_gate", {
        "command": " ".join(sys.argv), "profile": args.profile, "seeds": args.seeds,
        "results": results, "decisions": decisions})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
