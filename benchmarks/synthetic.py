"""Baseline autoencoder on the generator's default dataset (two machine types), over 3 seeds.

Generates the default synthetic dataset (DCASE counts: 990 + 10 training
normals, 50 per domain and condition in test) for fan and pump unless it is
already there, trains on each machine type's training clips, scores its test
clips, and reports AUC source, AUC target, pAUC and the official score for the
MSE and the selective-Mahalanobis scores (mean ± std over seeds). Writes
benchmarks/results/synthetic.json.

    .venv/bin/python benchmarks/synthetic.py [--data /tmp/asdflow-synth] [--severity 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baseline import run_seeds, table_rows  # noqa: E402
from _common import print_table, write_results  # noqa: E402

from asdflow.config import SynthConfig, load_config  # noqa: E402
from asdflow.data.dcase_reader import build_manifest  # noqa: E402
from asdflow.data.synth import synthesize_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/asdflow-synthetic-benchmark"))
    parser.add_argument("--machine-types", nargs="+", default=["fan", "pump"])
    parser.add_argument("--severity", type=float, default=None, help="default: the generator's default")
    parser.add_argument("--n-train-source", type=int, default=None, help="default: the DCASE count (990)")
    parser.add_argument("--profile", default="full", help="detector profile (default: full)")
    parser.add_argument("--max-frames-per-clip", type=int, default=32,
                        help="stacked frames kept per training clip (CPU time; 0 = all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    overrides = {"progress": False, "detector": {"baseline_ae": {"max_frames_per_clip": args.max_frames_per_clip or None}}}
    config = load_config(profile=args.profile, overrides=overrides)
    synth = SynthConfig(machine_types=args.machine_types)  # the generator's defaults: DCASE counts, 10 s
    if args.severity is not None:
        synth = synth.model_copy(update={"severity": args.severity})
    if args.n_train_source is not None:
        synth = synth.model_copy(update={"n_train_source": args.n_train_source})
    started = time.perf_counter()
    summary = synthesize_dataset(synth, args.data, progress=False)
    print(f"dataset {args.data}: {summary.n_files} files in {summary.seconds:.0f} s; severity {synth.severity}")
    manifest = build_manifest(args.data, args.machine_types, compute_md5=False, progress=False)
    train, test = manifest.select(split="train"), manifest.select(split="test")
    result = run_seeds(train, test, config, args.seeds)
    result.update(profile=args.profile, seeds=args.seeds, synth=synth.model_dump(), n_train=len(train),
                  n_test=len(test), detector=config.detector.model_dump(), seconds=time.perf_counter() - started)
    path = write_results("synthetic", result)
    print_table(table_rows(result), ["score", "auc_source", "auc_target", "pauc", "official"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
