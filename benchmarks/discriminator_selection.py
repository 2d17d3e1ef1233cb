"""Hyperparameter selection for the discriminator family, without touching real test rows for the choice.

Two selection signals, both free of real test labels:
- `validation_auc`: the valve split's TRAIN rows only: a fraction of the normal train clips is
  held out; AUC of their patches vs simulated anomalies of those patches (fit_info);
- the official score on the synthetic benchmark (asdflow.data.synth, its own test split).
The real valve test rows are scored only to REPORT (`--report-test`), never to choose.

    .venv/bin/python benchmarks/discriminator_selection.py valve --set '{"rounds": 2}' [--report-test]
    .venv/bin/python benchmarks/discriminator_selection.py synth --set '{...}'

`--set` is JSON merged into cfg.detector.discriminator (nested keys allowed). Prints one JSON line
per run and appends it to benchmarks/results/discriminator_selection.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, generated_splits, real_valve_split  # noqa: E402

from asdflow.config import load_config  # noqa: E402
from asdflow.detectors import make_detector  # noqa: E402
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest  # noqa: E402

SYNTH_ROOT = Path("/tmp/asdflow_discriminator_synth")


def synthetic_manifests(seed: int = 0):
    """valve-sized synthetic data (45 source + 7 target train clips, 10 s), fan and pump."""
    from asdflow.data.synth import synthesize_dataset

    config = load_config(profile="demo", overrides={"progress": False})
    synth = config.synth.model_copy(update={
        "machine_types": ["fan", "pump"], "duration": 10.0, "n_train_source": 45, "n_train_target": 7,
        "n_test_per_condition": 20, "n_supplemental_clean": 0, "n_supplemental_noise": 0, "seed": seed,
    })
    root = SYNTH_ROOT / f"seed{seed}"
    if not (root / "fan").exists():
        synthesize_dataset(synth, root, progress=False)
    return generated_splits(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", choices=["valve", "synth"])
    parser.add_argument("--set", default="{}", help="JSON overrides of detector.discriminator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="full")
    parser.add_argument("--report-test", action="store_true", help="valve: also score the real test rows (report only)")
    args = parser.parse_args()

    overrides = json.loads(args.set)  # load_config deep-merges them into the profile's discriminator settings
    config = load_config(profile=args.profile, overrides={
        "progress": False, "detector": {"family": "discriminator", "discriminator": overrides}})
    if args.data == "valve":
        train, test = real_valve_split()
    else:
        train, test = synthetic_manifests()
    row = {"data": args.data, "seed": args.seed, "set": overrides, "profile": args.profile}
    scores: dict[str, float] = {}
    fit_seconds, score_seconds, fit_cpu = 0.0, 0.0, 0.0
    for machine in train.machine_types():
        detector = make_detector(config.detector, config.features, seed=args.seed)
        started, cpu = time.perf_counter(), time.process_time()
        info = detector.fit(train.select(machine_type=machine), progress=False)
        fit_seconds += time.perf_counter() - started
        fit_cpu += time.process_time() - cpu  # 1 torch thread: CPU time ~ wall time on an idle machine
        row.setdefault("validation_auc", {})[machine] = info.get("validation_auc")
        if args.data == "synth" or args.report_test:
            started = time.perf_counter()
            scores.update(detector.score(test.select(machine_type=machine), progress=False))
            score_seconds += time.perf_counter() - started
    row.update(fit_seconds=round(fit_seconds, 1), fit_cpu_seconds=round(fit_cpu, 1),
               score_seconds=round(score_seconds, 1))
    if scores:
        overall = evaluate_scores(ground_truth_from_manifest(test), scores).overall
        row.update({m: round(getattr(overall, m), 4) for m in ("auc_source", "auc_target", "pauc", "official")})
    line = json.dumps(row)
    print(line)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RESULTS_DIR / "discriminator_selection.jsonl", "a") as out:
        out.write(line + "\n")


if __name__ == "__main__":
    main()
