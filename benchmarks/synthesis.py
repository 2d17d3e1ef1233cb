"""Tango synthetic normals: does the detector score better with them? And how fast is it here?

1. With vs without synthetic normals, per prompt strategy: the baseline autoencoder
   (MSE score, the demo profile's detector) trained on the real normal training clips
   alone, then on real + N synthetic normals from a tiny Tango fine-tuned (per
   strategy) on those same clips; DCASE official score (mean over detector seeds), on
   (a) a small synthetic dataset (asdflow.data.synth, one machine type) and (b) the
   real DCASE 2023 valve first-shot split (../shared/benchmarks/splits/valve-2023-firstshot.csv).
   The Tango here is the demo profile's random tiny model (no pretrained weights on
   this machine) fine-tuned for a few dozen CPU steps: it cannot make realistic audio,
   so this measures the plumbing and the effect of such clips, not the report's claim.
2. Speed per profile (tiny, demo), each in a fresh process: fine-tuning steps/s,
   seconds per generated clip, peak memory (VmHWM of the process; tracemalloc
   peak of Python-side allocations).

Writes benchmarks/results/synthesis.json and prints the tables.

    nice -n 5 .venv/bin/python benchmarks/synthesis.py [--steps 30] [--clips 24] [--seeds 0 1] [--skip-real]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, generated_splits, print_table, real_valve_split, summarise, write_results  # noqa: E402

from asdflow.config import AsdflowConfig, load_config  # noqa: E402
from asdflow.data.manifest import Manifest  # noqa: E402

STRATEGIES = ["template", "spectral", "metadata", "clap_ranked"]


def official_score(train: Manifest, test: Manifest, config: AsdflowConfig, seed: int) -> dict[str, float]:
    from asdflow.detectors import make_detector
    from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest

    detector = make_detector(config.detector, config.features, seed=seed)
    detector.fit(train, progress=False)
    scores = detector.score(test, progress=False)
    report = evaluate_scores(ground_truth_from_manifest(test), scores)
    return {k: float(getattr(report.overall, k)) for k in ("auc_source", "auc_target", "pauc", "official")}


def detector_scores(train: Manifest, test: Manifest, config: AsdflowConfig, seeds: list[int]) -> dict[str, Any]:
    runs = [official_score(train, test, config, s) for s in seeds]
    return {k: summarise(r[k] for r in runs) for k in runs[0]} | {"runs": runs}


def with_and_without(name: str, train: Manifest, test: Manifest, machine: str, config: AsdflowConfig,
                     strategies: list[str], seeds: list[int], work: Path) -> dict[str, Any]:
    """Baseline, then per strategy: fine-tune, generate, retrain the detector with the synthetic clips."""
    from asdflow.prompts import build_prompt_table
    from asdflow.synthesis.finetune import finetune_tango
    from asdflow.synthesis.generate import generate_normals, synthetic_manifest
    from asdflow.synthesis.quality import quality_report

    started = time.perf_counter()
    out: dict[str, Any] = {"dataset": name, "n_train": len(train), "n_test": len(test), "rows": []}
    base = detector_scores(train, test, config, seeds)
    out["rows"].append({"strategy": "none (real only)", "n_synthetic": 0, **{k: base[k]["mean"] for k in base if k != "runs"},
                        "official_std": base["official"]["std"]})
    print(f"[{name}] real only: official {base['official']['mean']:.4f} ± {base['official']['std']:.4f}", flush=True)
    table = build_prompt_table(train, machine, config, strategies)
    for strategy in strategies:
        if table[table["strategy"] == strategy].empty:
            out["rows"].append({"strategy": strategy, "note": "no prompts (no attributes?)"})
            continue
        cfg = config.model_copy(update={"synthesis": config.synthesis.model_copy(update={"prompt_strategy": strategy})})
        t0 = time.perf_counter()
        tuned = finetune_tango(train, machine, cfg, work / name / strategy / "tango", table, progress=False)
        gen = generate_normals(tuned.model_dir, train, machine, cfg, work / name / strategy / "gen", table,
                               strategies=[strategy], progress=False)
        synthetic = synthetic_manifest(gen.out_root).select(machine_type=machine)
        quality = quality_report(gen.out_root, train, machine, cfg, log_to_mlflow=False)
        combined = Manifest(root=train.root, records=[*train.records, *synthetic.records])
        scores = detector_scores(combined, test, config, seeds)
        row = {"strategy": strategy, "n_synthetic": len(synthetic),
               **{k: scores[k]["mean"] for k in scores if k != "runs"}, "official_std": scores["official"]["std"],
               "delta_official": scores["official"]["mean"] - base["official"]["mean"],
               "final_loss": tuned.final_loss, "finetune_s": tuned.seconds, "gen_s_per_clip": gen.seconds_per_clip,
               "frechet_logmel": quality.frechet_distance, "real_vs_real_frechet": quality.real_vs_real_frechet,
               "level_dbfs": quality.level_dbfs_mean, "seconds": time.perf_counter() - t0}
        out["rows"].append(row)
        print(f"[{name}] + {len(synthetic)} synthetic ({strategy}): official {row['official']:.4f} "
              f"(delta {row['delta_official']:+.4f}); FD {quality.frechet_distance:.3g} vs real-real "
              f"{quality.real_vs_real_frechet}; {row['seconds']:.0f} s", flush=True)
    out["seconds"] = time.perf_counter() - started
    return out


def synthetic_benchmark(config: AsdflowConfig, strategies: list[str], seeds: list[int], work: Path) -> dict[str, Any]:
    from asdflow.data.synth import synthesize_dataset

    synth = config.synth.model_copy(update={"machine_types": ["fan"], "duration": 2.0, "n_train_source": 36,
                                            "n_train_target": 4, "n_test_per_condition": 15})
    synthesize_dataset(synth, work / "synthetic_data", progress=False)
    train, test = generated_splits(work / "synthetic_data")
    result = with_and_without("synthetic-fan", train, test, "fan", config, strategies, seeds, work)
    result["synth"] = synth.model_dump()
    return result


def real_benchmark(config: AsdflowConfig, strategies: list[str], seeds: list[int], work: Path) -> dict[str, Any]:
    train, test = real_valve_split()
    return with_and_without("real-valve-firstshot", train, test, "valve", config, strategies, seeds, work)


# -- speed per profile, each in its own process (peak memory is per process) ---------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork
    and exec, so a child started by a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed_worker(profile: str, steps: int | None, clips: int) -> dict[str, Any]:
    import pandas as pd
    import torch

    from asdflow.data.dcase_reader import build_manifest
    from asdflow.data.synth import synthesize_dataset
    from asdflow.synthesis.finetune import finetune_tango
    from asdflow.synthesis.generate import generate_normals

    torch.set_num_threads(1)
    tracemalloc.start()
    overrides: dict[str, Any] = {"progress": False, "synth": {"machine_types": ["fan"], "duration": 2.0,
                                                              "n_train_source": 8, "n_train_target": 2}}
    if steps is not None:
        overrides["synthesis"] = {"steps": steps, "checkpoint_every": steps}
    config = load_config(profile=profile, overrides=overrides)
    synth = config.synthesis
    with tempfile.TemporaryDirectory() as tmp:
        synthesize_dataset(config.synth, Path(tmp) / "data", progress=False)
        manifest = build_manifest(Path(tmp) / "data", progress=False)
        train = manifest.select(split="train")
        table = pd.DataFrame({"clip": [r.name for r in train.records], "machine_type": "fan",
                              "strategy": "template", "text": "The normal condition machine sound of fan."})
        tuned = finetune_tango(manifest, "fan", config, Path(tmp) / "tango", table, progress=False)
        rss_finetune = peak_rss_mb()
        gen = generate_normals(tuned.model_dir, manifest, "fan", config, Path(tmp) / "gen", table,
                               strategies=["template"], clips_per_strategy=clips, progress=False)
    _, py_peak = tracemalloc.get_traced_memory()
    return {
        "profile": profile, "model": synth.model, "duration_s": synth.duration, "batch_size": synth.batch_size,
        "steps": tuned.steps, "steps_per_s": tuned.steps_per_second, "finetune_s": tuned.seconds,
        "clips": len(gen.clips), "inference_steps": synth.inference_steps, "s_per_clip": gen.seconds_per_clip,
        "peak_rss_mb_after_finetune": rss_finetune,
        "peak_rss_mb": peak_rss_mb(),
        "tracemalloc_peak_mb": py_peak / 2**20,
    }


def speed(profile: str, steps: int | None, clips: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--speed-worker", profile, "--worker-clips", str(clips)]
    if steps is not None:
        command += ["--worker-steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"profile": profile, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="Tango fine-tuning steps per strategy (demo: 60)")
    parser.add_argument("--clips", type=int, default=24, help="synthetic clips per strategy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="detector seeds")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--speed-only", action="store_true",
                        help="re-measure only the speed part, keeping the with/without results in the JSON")
    parser.add_argument("--speed-worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-clips", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_worker:
        print(json.dumps(speed_worker(args.speed_worker, args.worker_steps, args.worker_clips)))
        return

    if args.speed_only:
        path = REPO_ROOT / "benchmarks" / "results" / "synthesis.json"
        results = json.loads(path.read_text())
        results["speed"] = [speed("tiny", None, 4), speed("demo", 20, 8)]
        path.write_text(json.dumps(results, indent=2) + "\n")
        print_speed(results["speed"])
        print(f"updated the speed part of {path}")
        return

    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    config = load_config(profile="demo", overrides={"progress": False, "synthesis": {
        "steps": args.steps, "checkpoint_every": args.steps, "clips_per_strategy": args.clips, "duration": 2.0}})
    results: dict[str, Any] = {"tango": config.synthesis.model_dump(), "detector": config.detector.model_dump(),
                               "seeds": args.seeds, "datasets": []}
    print(f"Tango: demo profile (random tiny model), {args.steps} fine-tuning steps per strategy, {args.clips} clips of "
          f"{config.synthesis.duration} s, {config.synthesis.inference_steps} DDIM steps; detector baseline_ae MSE, "
          f"demo profile, seeds {args.seeds}", flush=True)
    with tempfile.TemporaryDirectory(prefix="asdflow-synthesis-bench-") as tmp:
        if not args.skip_synthetic:
            results["datasets"].append(synthetic_benchmark(config, args.strategies, args.seeds, Path(tmp)))
        if not args.skip_real:
            from real_valve import DATA as REAL_DATA  # lazy: keeps the speed workers' imports (and memory) as they were
            from real_valve import SPLIT

            if SPLIT.exists() and REAL_DATA.exists():
                results["datasets"].append(real_benchmark(config, args.strategies, args.seeds, Path(tmp)))
            else:
                results["real_valve"] = f"absent: {SPLIT} / {REAL_DATA}"
    print("speed per profile (fresh process each) ...", flush=True)
    results["speed"] = [speed("tiny", None, 4), speed("demo", 20, 8)]
    results["seconds"] = time.perf_counter() - started
    path = write_results("synthesis", results)

    columns = ["strategy", "n_synthetic", "auc_source", "auc_target", "pauc", "official", "official_std",
               "delta_official", "frechet_logmel", "real_vs_real_frechet"]
    for dataset in results["datasets"]:
        print(f"\n{dataset['dataset']}: {dataset['n_train']} real training clips, {dataset['n_test']} test clips")
        print_table(dataset["rows"], columns)
    print_speed(results["speed"])
    print(f"\nwrote {path} ({results['seconds']:.0f} s)")


def print_speed(rows: list[dict[str, Any]]) -> None:
    print("\nspeed (this machine, one torch thread; demo fine-tuning cut to 20 steps)")
    print_table(rows, ["profile", "duration_s", "batch_size", "steps", "steps_per_s", "clips",
                       "inference_steps", "s_per_clip", "peak_rss_mb", "tracemalloc_peak_mb"])


if __name__ == "__main__":
    main()
