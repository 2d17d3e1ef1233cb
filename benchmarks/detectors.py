"""Every registered detector family side by side, 3 seeds each, on the real valve split and on synthetic data.

Per family, dataset and seed: fit on the training clips, score every test clip, and report
the DCASE official score, AUC source, AUC target and pAUC (mean ± std over seeds), the
training time, the scoring time of one 10 s clip (`score_waveform`, with its record) and the
parameter count. Each family runs with its config defaults at the `full` profile (`--quick`:
the `demo` profile and one seed). A family that fails is recorded with its error, and the
others go on.

Datasets:
- `valve`: the DCASE 2023 valve first-shot split ../shared/benchmarks/splits/valve-2023-firstshot.csv
  (52 training normals, 150 test clips; see real_valve.py);
- `valve_mirror`: the same split mirrored: the other half of the test normals trains, the
  published training normals from the test folder are scored with all 100 anomalies;
- `synthetic`: the generator's valve (asdflow.data.synth, severity 0.5), sized to fit the run:
  5 s clips, 150 source + 10 target training normals, 20 test clips per domain and label.

Beside the scores: the setting the label-free selection chose (twfr: pooling and scorer; the
frame-based families: the time-pooling r) and the ORACLE, the best candidate on the test
labels (reported, never used). `--time-pooling mean` runs the frame-based families as they
were before the shared pooling (r fixed at 1, the mean), as parts named `<family>@mean`.

Each family's results go to benchmarks/results/detectors_parts/<family>.json as soon as they
exist; benchmarks/results/detectors.json and the markdown table are rebuilt from every part,
so families may run in separate processes (`--families a` and `--families b` in parallel).

    nice -n 5 .venv/bin/python benchmarks/detectors.py [--families baseline_ae conditional_ae]
        [--seeds 0 1 2] [--datasets valve synthetic] [--quick] [--table-only]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO_ROOT, RESULTS_DIR, generated_splits, machine_info, mean_std, real_valve_split, summarise, write_results,
)

from asdflow.config import AsdflowConfig, SynthConfig, load_config  # noqa: E402
from asdflow.data.audio import load_audio  # noqa: E402
from asdflow.data.manifest import Manifest  # noqa: E402
from asdflow.data.synth import synthesize_dataset  # noqa: E402
from asdflow.detectors import available_families, make_detector  # noqa: E402
from asdflow.errors import one_line  # noqa: E402
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest  # noqa: E402

METRICS = ("official", "auc_source", "auc_target", "pauc")
DATASETS = ("valve", "valve_mirror", "synthetic")
PARTS_DIR = RESULTS_DIR / "detectors_parts"
SYNTH_DIR = Path("/tmp/asdflow-detectors-synthetic")
SYNTH = SynthConfig(
    machine_types=["valve"], duration=5.0, n_train_source=150, n_train_target=10, n_test_per_condition=20,
    n_supplemental_clean=0, n_supplemental_noise=0, seed=0,
)
BASELINE_REFERENCE = "baseline_ae MSE on the real valve split: official 0.4537 ± 0.0093 (benchmarks/real_valve.py)"


def describe_synthetic() -> str:
    s = SYNTH
    return (f"synthetic {'+'.join(s.machine_types)}: {s.duration:g} s clips, {s.n_train_source} source + "
            f"{s.n_train_target} target training normals, {s.n_test_per_condition} test clips per domain and label "
            f"({4 * s.n_test_per_condition} test clips), severity {s.severity}")


def ensure_synthetic() -> None:
    """Render the synthetic set once, into a private folder renamed into place: benchmark processes
    running side by side never read a clip another one is rewriting."""
    expected = SYNTH.n_train_source + SYNTH.n_train_target + 4 * SYNTH.n_test_per_condition
    if sum(1 for _ in SYNTH_DIR.glob("*/*/*.wav")) >= expected * len(SYNTH.machine_types):
        return
    scratch = SYNTH_DIR.with_name(f"{SYNTH_DIR.name}.{os.getpid()}")
    synthesize_dataset(SYNTH, scratch, progress=False)
    try:
        scratch.rename(SYNTH_DIR)
    except OSError:  # another process won the race (or an older partial folder is there): use a copy of ours
        shutil.rmtree(SYNTH_DIR, ignore_errors=True)
        shutil.move(str(scratch), str(SYNTH_DIR))


def load_dataset(name: str) -> tuple[Manifest, Manifest, str]:
    if name in ("valve", "valve_mirror"):
        train, test = real_valve_split(mirror=name == "valve_mirror")
        which = "mirrored (the other half of the test normals trains)" if name == "valve_mirror" else "published"
        return train, test, f"valve first-shot split, {which}: {len(train)} training normals, {len(test)} test clips"
    if name == "synthetic":
        ensure_synthetic()
        return *generated_splits(SYNTH_DIR, SYNTH.machine_types), describe_synthetic()
    raise SystemExit(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")


def count_parameters(detector: Any) -> int | None:
    """Parameters of every torch module the detector holds (each tensor once)."""
    import torch

    if hasattr(detector, "n_parameters"):
        return int(detector.n_parameters())
    seen: dict[int, int] = {}
    for value in vars(detector).values():
        values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, torch.nn.Module):
                seen.update({id(p): p.numel() for p in item.parameters()})
    return sum(seen.values()) if seen else None


def ten_second_clip(test: Manifest, sample_rate: int):
    """A 10 s waveform and its record for timing: the first test clip, tiled to 10 s if shorter."""
    record = test.records[0]
    wave = load_audio(record.path, sample_rate)
    n = 10 * sample_rate
    return np.resize(wave, n).astype(np.float32), record


def chosen_setting(detector: Any) -> str | None:
    """What the label-free selection chose: twfr's candidate, or a frame family's time pooling."""
    info = detector.fit_info
    choice = info.get("selection") or info.get("time_pooling")
    return None if not choice else f"{choice['chosen']}" + (" (fallback)" if "fewer than" in choice.get("reason", "") else "")


def oracle_scores(detector: Any, cfg: AsdflowConfig, train: Manifest, test: Manifest, seed: int) -> dict[str, dict[str, float]]:
    """candidate -> {clip: score} on the test clips, for the oracle (test labels pick the best: reported only)."""
    from asdflow.data.audio import load_audio as load
    from asdflow.detectors.twfr.detector import candidate_name

    out: dict[str, dict[str, float]] = {}
    if detector.family == "twfr":
        p = cfg.detector.twfr
        for scorer in p.scorers:
            for r in p.r_grid:
                fixed = cfg.model_copy(deep=True)
                fixed.detector.twfr.default_r, fixed.detector.twfr.default_scorer = r, scorer
                fixed.detector.twfr.selection.strategy = "fixed"
                single = make_detector(fixed.detector, fixed.features, seed=seed)
                single.fit(train, progress=False)
                out[candidate_name(scorer, r)] = single.score(test, progress=False)
        return out
    pooling = getattr(cfg.detector, detector.family, None)
    if pooling is None or not hasattr(pooling, "time_pooling"):
        return out
    grid = pooling.time_pooling.r_grid
    for start in range(0, len(test.records), 32):
        chunk = test.records[start : start + 32]
        waves = [load(r.path, cfg.features.sample_rate) for r in chunk]
        for r, values in detector.candidate_scores(waves, chunk, grid).items():
            out.setdefault(f"r={r:g}", {}).update({rec.name: float(v) for rec, v in zip(chunk, values)})
    return out


def run_one(family: str, config: AsdflowConfig, train: Manifest, test: Manifest, seed: int,
            time_pooling: str = "auto") -> dict[str, Any]:
    cfg = config.model_copy(deep=True)
    cfg.detector.family = family
    if time_pooling == "mean" and hasattr(getattr(cfg.detector, family, None), "time_pooling"):
        getattr(cfg.detector, family).time_pooling.r = 1.0
    scores: dict[str, float] = {}
    chosen: list[str] = []
    candidates: dict[str, dict[str, float]] = {}
    fit_seconds = score_seconds = 0.0
    params = None
    timing: list[float] = []
    for machine in train.machine_types():
        detector = make_detector(cfg.detector, cfg.features, seed=seed)
        started = time.perf_counter()
        detector.fit(train.select(machine_type=machine), progress=False)
        fit_seconds += time.perf_counter() - started
        machine_test = test.select(machine_type=machine)
        started = time.perf_counter()
        scores.update(detector.score(machine_test, progress=False))
        score_seconds += time.perf_counter() - started
        chosen.append(chosen_setting(detector) or "")
        if time_pooling == "auto":
            for name, values in oracle_scores(detector, cfg, train.select(machine_type=machine), machine_test, seed).items():
                candidates.setdefault(name, {}).update(values)
        params = (params or 0) + (count_parameters(detector) or 0)
        wave, record = ten_second_clip(machine_test, cfg.features.sample_rate)
        detector.score_waveform(wave, record)  # warm-up
        for _ in range(3):
            started = time.perf_counter()
            detector.score_waveform(wave, record)
            timing.append(time.perf_counter() - started)
    truth = ground_truth_from_manifest(test)
    report = evaluate_scores(truth, scores)
    oracle = {name: evaluate_scores(truth, values).overall.official for name, values in candidates.items()
              if len(values) == len(scores)}
    best = max(oracle, key=oracle.get) if oracle else None
    return {
        "seed": seed,
        **{m: getattr(report.overall, m) for m in METRICS},
        "chosen": "; ".join(c for c in chosen if c) or None,
        "oracle": {"candidate": best, "official": oracle[best]} if best else None,
        "candidates_official": oracle,
        "fit_seconds": fit_seconds,
        "score_seconds_total": score_seconds,
        "score_seconds_per_10s_clip": float(np.median(timing)),
        "n_parameters": params or None,
    }


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r and "skipped" not in r]
    out: dict[str, Any] = {"n_ok": len(ok), "errors": [r["error"] for r in runs if "error" in r],
                           "n_skipped": sum("skipped" in r for r in runs)}
    for key in (*METRICS, "fit_seconds", "score_seconds_per_10s_clip"):
        if ok:
            out[key] = summarise(r[key] for r in ok)
    out["n_parameters"] = ok[0]["n_parameters"] if ok else None
    out["chosen"] = sorted({r["chosen"] for r in ok if r.get("chosen")})
    oracles = [r["oracle"] for r in ok if r.get("oracle")]
    if oracles:
        out["oracle"] = summarise(o["official"] for o in oracles)
        out["oracle_candidates"] = sorted({o["candidate"] for o in oracles})
    return out


def family_code_hash(family: str) -> str:
    """sha256 of the family's package and the family settings module: which code version a part measured."""
    detectors = REPO_ROOT / "src" / "asdflow" / "detectors"
    files = sorted((detectors / family).rglob("*.py")) + [detectors / "family_configs.py"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def part_path(family: str) -> Path:
    return PARTS_DIR / f"{family}.json"  # PARTS_DIR: module global, set from --name


def past(deadline: datetime | None) -> bool:
    return deadline is not None and datetime.now(timezone.utc) >= deadline


def guarded_run(family, name, config, train, test, seed, deadline, time_pooling="auto") -> dict[str, Any]:
    """One seed's results, its error (recorded, not raised), or a skip past the deadline."""
    if past(deadline):  # the run's time is up: say so instead of starting a fit that cannot finish
        result: dict[str, Any] = {"seed": seed, "skipped": f"not started: past the deadline {deadline:%H:%M} UTC"}
        print(f"  {family} {name} seed {seed}: {result['skipped']}", flush=True)
        return result
    try:
        result = run_one(family, config, train, test, seed, time_pooling)
        oracle = result["oracle"]
        print(f"  {family} {name} seed {seed}: official {result['official']:.4f} (fit {result['fit_seconds']:.0f} s; "
              f"chose {result['chosen']}; oracle {oracle['official']:.4f} {oracle['candidate']})" if oracle else
              f"  {family} {name} seed {seed}: official {result['official']:.4f} (fit {result['fit_seconds']:.0f} s)",
              flush=True)
    except Exception as err:  # noqa: BLE001 - a failing family is recorded, the run goes on
        result = {"seed": seed, "error": f"{type(err).__name__}: {one_line(err)}",
                  "traceback": traceback.format_exc(limit=5)}
        print(f"  {family} {name} seed {seed}: ERROR {result['error']}", flush=True)
    return result


def write_part(family: str, part: dict[str, Any], dataset: str) -> None:
    """Write this process's entry for `dataset`, keeping the other datasets' entries as they are on disk now
    (another process may be running the same family on another dataset)."""
    PARTS_DIR.mkdir(parents=True, exist_ok=True)
    path = part_path(family)
    on_disk = json.loads(path.read_text()) if path.exists() else {}
    merged = {**part, "datasets": {**on_disk.get("datasets", {}), dataset: part["datasets"][dataset]}}
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(merged, indent=2, default=float) + "\n")
    scratch.replace(path)  # atomic: a reader never sees half a file


def run_family(
    family: str, config: AsdflowConfig, datasets: dict, seeds: list[int], profile: str, deadline: datetime | None = None,
    time_pooling: str = "auto",
) -> None:
    label = family if time_pooling == "auto" else f"{family}@{time_pooling}"
    part: dict[str, Any] = {"family": label, "profile": profile, "seeds": seeds, "datasets": {},
                            "code_sha256": family_code_hash(family), "time_pooling": time_pooling}
    if part_path(label).exists():  # keep this family's other datasets from an earlier run
        part["datasets"] = json.loads(part_path(label).read_text()).get("datasets", {})
    detector_config = config.detector.model_dump().get(family)
    for name, (train, test, description) in datasets.items():
        runs = []
        for seed in seeds:
            started = time.perf_counter()
            runs.append(guarded_run(family, name, config, train, test, seed, deadline, time_pooling))
            runs[-1]["wall_seconds"] = time.perf_counter() - started
            part["datasets"][name] = {"description": description, "runs": runs, "summary": summarise_runs(runs),
                                      "config": detector_config, "profile": profile, "seeds": seeds,
                                      "code_sha256": part["code_sha256"]}
            write_part(label, part, name)


def markdown_table(parts: list[dict[str, Any]]) -> str:
    header = ("| family | dataset | seeds ok | official | AUC source | AUC target | pAUC | train s / seed "
              "| score ms / 10 s clip | parameters | label-free choice | oracle (test labels) |")
    lines = [header, "|" + "---|" * 12]
    for part in parts:
        for name in DATASETS:
            entry = part["datasets"].get(name)
            if entry is None:
                continue
            s = entry["summary"]
            n_runs = s["n_ok"] + len(s["errors"]) + s.get("n_skipped", 0)
            if not s["n_ok"]:
                error = s["errors"][0].replace("|", "/")[:160] if s["errors"] else "not run (deadline)"
                lines.append(f"| {part['family']} | {name} | 0/{n_runs} | ERROR: {error} | | | | | | | | |")
                continue
            fit = s["fit_seconds"]
            ms = s["score_seconds_per_10s_clip"]
            lines.append(
                f"| {part['family']} | {name} | {s['n_ok']}/{n_runs} | {mean_std(s['official'])} "
                f"| {mean_std(s['auc_source'])} | {mean_std(s['auc_target'])} | {mean_std(s['pauc'])} | {fit['mean']:.0f} ± {fit['std']:.0f} "
                f"| {1000 * ms['mean']:.0f} | {s['n_parameters'] if s['n_parameters'] is not None else '—'} "
                f"| {', '.join(s.get('chosen', [])) or '—'} "
                f"| {mean_std(s.get('oracle'), 3) + ' ' + ', '.join(s.get('oracle_candidates', [])) if s.get('oracle') else '—'} |"
            )
    return "\n".join(lines)


def rebuild(command: str) -> tuple[Path, str]:
    parts = [json.loads(p.read_text()) for p in sorted(PARTS_DIR.glob("*.json"))]
    name = PARTS_DIR.name.replace("_parts", "")
    order = {f: i for i, f in enumerate(available_families())}
    parts.sort(key=lambda p: (p["family"].split("@")[0] != "baseline_ae", order.get(p["family"].split("@")[0], 99),
                              p["family"]))
    table = markdown_table(parts)
    path = write_results(name, {
        "command": command,
        "reference": BASELINE_REFERENCE,
        "synthetic": describe_synthetic(),
        "machine_note": f"{os.cpu_count()} cores shared with other jobs; timings under load",
        "families": {p["family"]: p for p in parts},
        "table_markdown": table,
    })
    return path, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=None, help="default: every registered family")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (--quick: 0)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--quick", action="store_true", help="the demo profile and one seed (a smoke run)")
    parser.add_argument("--deadline", default=None, help="HH:MM UTC: start no fit after it (later seeds are marked skipped)")
    parser.add_argument("--name", default="detectors",
                        help="results name: benchmarks/results/<name>.json and <name>_parts/ (a separate rerun)")
    parser.add_argument("--table-only", action="store_true", help="rebuild detectors.json and the table from the parts")
    parser.add_argument("--time-pooling", choices=("auto", "mean"), default="auto",
                        help="mean: the frame-based families as before the shared pooling (parts <family>@mean)")
    args = parser.parse_args()
    command = "python benchmarks/detectors.py " + " ".join(sys.argv[1:])
    global PARTS_DIR
    PARTS_DIR = RESULTS_DIR / f"{args.name}_parts"
    if not args.table_only:
        families = args.families or available_families()
        unknown = sorted(set(families) - set(available_families()))
        if unknown:
            raise SystemExit(f"unknown famil(ies) {unknown}: registered are {available_families()}")
        profile = "demo" if args.quick else "full"
        seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
        config = load_config(profile=profile, overrides={"progress": False})
        datasets = {}
        for name in args.datasets:
            datasets[name] = load_dataset(name)
            print(datasets[name][2], flush=True)
        print(f"families {families}; seeds {seeds}; profile {profile}; {machine_info()['cpu_count']} cores", flush=True)
        deadline = None
        if args.deadline:
            hour, minute = map(int, args.deadline.split(":"))
            deadline = datetime.now(timezone.utc).replace(hour=hour, minute=minute, second=0, microsecond=0)
        for family in families:
            run_family(family, config, datasets, seeds, profile, deadline, args.time_pooling)
    path, table = rebuild(command)
    print(f"\n{BASELINE_REFERENCE}\n{describe_synthetic()}\n")
    print(table)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
