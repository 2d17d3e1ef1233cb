"""How the AudDSR defaults were chosen: candidates scored on data that is not the real test rows.

Selection data: a synthetic valve set shaped like the real first-shot split (27 source +
25 target training normals, 25 normals and 25 anomalies per domain in test; generator
seed 7, default severity), made by `asdflow.data.synth`. Each candidate (a set of
AudDSRConfig overrides) is fitted on its train clips and scored on its test clips;
the table gives the official score. The real valve test rows are scored only with
`--report-real` (to REPORT the chosen setting, never to choose).

    .venv/bin/python benchmarks/auddsr_selection.py --candidates default mean_vs_topk ... [--seeds 0]
    .venv/bin/python benchmarks/auddsr_selection.py --report-real --candidates default --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import generated_splits, mean_std, print_table, real_valve_split, summarise, write_results  # noqa: E402

from asdflow.config import SynthConfig, load_config  # noqa: E402
from asdflow.data.manifest import Manifest  # noqa: E402
from asdflow.detectors import make_detector  # noqa: E402
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest  # noqa: E402

METRICS = ("auc_source", "auc_target", "pauc", "official")
SELECTION_DATA = Path("/tmp/asdflow-auddsr-selection")
# candidate name -> AudDSRConfig overrides (the defaults are "default")
CANDIDATES: dict[str, dict[str, Any]] = {
    "default": {},
    "no_median": {"clip_normalisation": "none"},  # round 1: median (0.570) beat none (0.515), seed 0
    "median": {"clip_normalisation": "median"},
    "codes128": {"n_codes_top": 128, "n_codes_bottom": 128},
    "codes32": {"n_codes_top": 32, "n_codes_bottom": 32},
    "anomaly_p0.75": {"anomaly_probability": 0.75},
    "small_masks": {"coverage_range": (0.02, 0.2)},
    "long": {"vq_steps": 600, "steps": 600},
    "short": {"vq_steps": 200, "steps": 200},
}


def selection_manifests(root: Path = SELECTION_DATA) -> tuple[Manifest, Manifest]:
    synth = SynthConfig(
        machine_types=["valve"], n_train_source=27, n_train_target=25, n_test_per_condition=25,
        n_supplemental_clean=0, n_supplemental_noise=0, seed=7,
    )
    from asdflow.data.synth import synthesize_dataset

    synthesize_dataset(synth, root, progress=False)
    return generated_splits(root, ["valve"])


def run(train: Manifest, test: Manifest, overrides: dict[str, Any], seed: int, profile: str) -> dict[str, Any]:
    """Fit one detector; evaluate every clip-score variant of its anomaly maps (mean = the configured one)."""
    config = load_config(profile=profile, overrides={"progress": False, "detector": {"family": "auddsr", "auddsr": overrides}})
    detector = make_detector(config.detector, config.features, seed=seed)
    started = time.perf_counter()
    detector.fit(train, progress=False)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    specs = detector._load_specs(test.records, False, "scoring")
    variants = detector.score_variants(specs)
    score_seconds = time.perf_counter() - started
    truth = ground_truth_from_manifest(test)
    out: dict[str, Any] = {}
    for variant, values in variants.items():
        report = evaluate_scores(truth, {r.name: float(v) for r, v in zip(test.records, values)})
        out[variant] = {m: getattr(report.overall, m) for m in METRICS}
    out["configured"] = out["mean" if detector.params.score == "mean" else f"top{detector.params.top_k_percent:g}"]
    out.update(seed=seed, fit_seconds=fit_seconds, score_seconds_per_clip=score_seconds / len(test.records),
               parameters=detector.parameter_count(), fit_info=detector.fit_info)
    return out


VARIANTS = ("mean", "top1", "top5", "top10", "max")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--report-real", action="store_true", help="score the REAL valve test rows (report only)")
    parser.add_argument("--name", default=None, help="results file name (default: auddsr_selection / auddsr_real_valve)")
    args = parser.parse_args()
    if args.report_real:
        train, test = real_valve_split()
        data = "real valve first-shot split (test rows: REPORT only)"
    else:
        train, test = selection_manifests()
        data = f"synthetic valve selection set {SELECTION_DATA}"
    print(f"{data}: {len(train.records)} train, {len(test.records)} test; seeds {args.seeds}", flush=True)
    results: dict[str, Any] = {}
    rows = []
    for name in args.candidates:
        runs = []
        for seed in args.seeds:
            runs.append(run(train, test, CANDIDATES[name], seed, args.profile))
            print(f"  {name} seed {seed}: " + ", ".join(f"{v} {runs[-1][v]['official']:.4f}" for v in VARIANTS)
                  + f" (fit {runs[-1]['fit_seconds']:.0f} s)", flush=True)
        summary = {v: {m: summarise(r[v][m] for r in runs) for m in METRICS} for v in (*VARIANTS, "configured")}
        summary["fit_seconds"] = summarise(r["fit_seconds"] for r in runs)
        summary["score_seconds_per_clip"] = summarise(r["score_seconds_per_clip"] for r in runs)
        results[name] = {"overrides": CANDIDATES[name], "runs": runs, "summary": summary}
        for v in VARIANTS:
            rows.append({"candidate": name, "clip score": v,
                         **{m: mean_std(summary[v][m]) for m in METRICS},
                         "fit_s": summary["fit_seconds"]["mean"], "params": runs[0]["parameters"]})
    name = args.name or ("auddsr_real_valve" if args.report_real else "auddsr_selection")
    path = write_results(name, {"data": data, "seeds": args.seeds, "profile": args.profile, "candidates": results})
    print_table(rows, ["candidate", "clip score", *METRICS, "fit_s", "params"])
    print(f"wrote {path}")
    print(json.dumps({k: v["summary"]["configured"]["official"]["mean"] for k, v in results.items()}))


if __name__ == "__main__":
    main()
