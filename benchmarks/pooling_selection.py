"""Label-free choice of the TWFR pooling and scorer: the strategies side by side, with the oracle beside them.

For every dataset and seed, the `twfr` family is fitted with each selection strategy
(`fixed`, `proxy`, `fusion_mean`, `fusion_min`) on the training normals only, and scored
on the test clips. Beside them: every single candidate (r x scorer) fitted with the
fixed strategy, so the table shows the ORACLE (the best candidate on the test labels:
reported, never used) and how far each strategy is from it. The proxy's own table
(AUC/pAUC on simulated anomalies per candidate) is kept for the first seed, with
whether it saturates.

Datasets: `valve` (the real first-shot split), `valve_mirror` (the same split with the
other half of the test normals training), `synthetic` (the generator's valve, as in
detectors.py), and the generated `impulsive` and `stationary` machines
(asdflow.data.synth_timing), whose right pooling is known (near max, near mean).

The fixed default (`detector.twfr.default_r/default_scorer`) is chosen here once, on the
generated data only (synthetic, impulsive, stationary): the candidate with the best mean
score there is printed as `fixed default from generated data`; the valve splits never
take part in that choice.

    nice -n 5 .venv/bin/python benchmarks/pooling_selection.py [--seeds 0 1 2] [--datasets ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import generated_splits, print_table, real_valve_split, single_domain_or_official, write_results  # noqa: E402
from detectors import SYNTH, ensure_synthetic  # noqa: E402

from asdflow.config import load_config  # noqa: E402
from asdflow.data.synth_timing import write_timing_machine  # noqa: E402
from asdflow.detectors import make_detector  # noqa: E402
from asdflow.detectors.twfr.detector import candidate_name  # noqa: E402

STRATEGIES = ("fixed", "proxy", "fusion_mean", "fusion_min")
DATASETS = ("valve", "valve_mirror", "synthetic", "impulsive", "stationary")
GENERATED = ("synthetic", "impulsive", "stationary")
TIMING_DIR = Path("/tmp/asdflow-timing-machines")


def load_dataset(name: str):
    if name == "valve":
        return real_valve_split()
    if name == "valve_mirror":
        return real_valve_split(mirror=True)
    if name == "synthetic":
        ensure_synthetic()
        return generated_splits(Path("/tmp/asdflow-detectors-synthetic"), SYNTH.machine_types)
    write_timing_machine(TIMING_DIR, name, n_train=48, n_test=50, seconds=10.0)
    return generated_splits(TIMING_DIR, [name])


def fit_score(config, train, test, seed: int) -> tuple[float, dict[str, Any], float]:
    detector = make_detector(config.detector, config.features, seed=seed)
    started = time.perf_counter()
    info = detector.fit(train, progress=False)
    seconds = time.perf_counter() - started
    return single_domain_or_official(test, detector.score(test, progress=False)), info, seconds


def with_twfr(base, **twfr):
    cfg = base.model_copy(deep=True)
    cfg.detector.family = "twfr"
    cfg.detector.twfr = type(cfg.detector.twfr).model_validate({**cfg.detector.twfr.model_dump(), **twfr})
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    args = parser.parse_args()
    base = load_config(profile="full", overrides={"progress": False})
    grid, scorers = base.detector.twfr.r_grid, base.detector.twfr.scorers
    results: dict[str, Any] = {}
    rows = []
    for name in args.datasets:
        train, test = load_dataset(name)
        print(f"{name}: {len(train)} training normals, {len(test)} test clips", flush=True)
        entry: dict[str, Any] = {"candidates": {}, "strategies": {}}
        # every candidate alone (deterministic: no seed in a fixed fit but the GMM's init)
        for scorer in scorers:
            for r in grid:
                cfg = with_twfr(base, default_r=r, default_scorer=scorer, selection={"strategy": "fixed"})
                entry["candidates"][candidate_name(scorer, r)] = fit_score(cfg, train, test, 0)[0]
        oracle_name = max(entry["candidates"], key=entry["candidates"].get)
        entry["oracle"] = {"candidate": oracle_name, "official": entry["candidates"][oracle_name]}
        for strategy in STRATEGIES:
            runs = []
            for seed in args.seeds:
                cfg = with_twfr(base, selection={"strategy": strategy, "seed": 0})
                official, info, seconds = fit_score(cfg, train, test, seed)
                chosen = info["selection"]["chosen"]
                runs.append({"seed": seed, "official": official, "chosen": chosen, "fit_seconds": seconds,
                             "saturated": info["selection"]["saturated"]})
                if strategy == "proxy" and seed == args.seeds[0]:
                    entry["proxy_table"] = info["selection"]["table"]
                print(f"  {strategy:<12} seed {seed}: {official:.4f} ({chosen}, fit {seconds:.1f} s)", flush=True)
            values = [r["official"] for r in runs]
            entry["strategies"][strategy] = {"runs": runs, "mean": statistics.fmean(values),
                                             "std": statistics.stdev(values) if len(values) > 1 else 0.0}
            rows.append({
                "dataset": name, "strategy": strategy,
                "official": f"{statistics.fmean(values):.4f} ± {entry['strategies'][strategy]['std']:.4f}",
                "chosen": ", ".join(sorted({r["chosen"] for r in runs})),
                "oracle": f"{entry['oracle']['official']:.4f} ({oracle_name})",
                "gap": f"{entry['oracle']['official'] - statistics.fmean(values):+.4f}",
                "fit s": f"{statistics.median(r['fit_seconds'] for r in runs):.1f}",
            })
        results[name] = entry

    generated = [d for d in GENERATED if d in results]
    fixed_default = None
    if generated:
        names = list(results[generated[0]]["candidates"])
        fixed_default = max(names, key=lambda n: np.mean([results[d]["candidates"][n] for d in generated]))
        print(f"\nfixed default from generated data ({', '.join(generated)}): {fixed_default}")
    path = write_results("pooling_selection", {
        "command": "python benchmarks/pooling_selection.py " + " ".join(sys.argv[1:]),
        "seeds": args.seeds, "datasets": results, "fixed_default_from_generated_data": fixed_default,
        "note": "oracle = best single candidate on the test labels: reported, never used by any strategy",
    })
    print()
    print_table(rows, ["dataset", "strategy", "official", "chosen", "oracle", "gap", "fit s"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
