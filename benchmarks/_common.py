"""Small helpers shared by the benchmark scripts: timing, summaries, tables, JSON.

Every benchmark writes `benchmarks/results/<name>.json` (with the machine it ran
on) and prints an aligned table, so numbers in notes can be traced to a file.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
# Real data sits beside the repository (CI clones it with shared/ next to it).
SHARED_REAL_DATA = REPO_ROOT / ".." / "shared" / "data" / "real"


def summarise(values: Iterable[float]) -> dict[str, float]:
    """n, mean, std (sample; 0 for one value), median, min, max, and half the range as `spread`."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("summarise: no values")
    return {
        "n": len(data),
        "mean": statistics.fmean(data),
        "std": statistics.stdev(data) if len(data) > 1 else 0.0,
        "median": statistics.median(data),
        "min": min(data),
        "max": max(data),
        "spread": (max(data) - min(data)) / 2,
    }


def mean_std(stats: Mapping[str, float] | None, digits: int = 4) -> str:
    """A `summarise` result as "mean ± std" ("—" when there is none)."""
    return "—" if not stats else f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def real_valve_split(mirror: bool = False) -> tuple[Any, Any]:
    """(train, test) manifests of the real valve first-shot split (or its mirror: the other half of the
    test normals trains); exits with a clear message when it is absent."""
    from real_valve import DATA, SPLIT, first_shot_manifests  # lazy: real_valve imports this module

    if not SPLIT.exists() or not DATA.exists():
        raise SystemExit(f"real data absent: need {SPLIT} and {DATA}")
    return first_shot_manifests(mirror=mirror)


def generated_splits(root: Path, machine_types: list[str] | None = None) -> tuple[Any, Any]:
    """(train, test) manifests of a dataset the generator wrote under root (no md5, no progress bar)."""
    from asdflow.data.dcase_reader import build_manifest  # lazy: the light benchmarks never need it

    manifest = build_manifest(root, machine_types, compute_md5=False, progress=False)
    return manifest.select(split="train"), manifest.select(split="test")


def time_rounds(fn: Callable[[], Any], rounds: int = 5, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `rounds` calls of fn, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:  # the affinity mask is what a process may really use (containers, taskset)
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def write_results(name: str, payload: Mapping[str, Any], directory: Path | None = None) -> Path:
    """Write payload (+ timestamp and machine info) to <directory>/<name>.json; return the path."""
    directory = directory or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **payload,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    return path


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """Rows of dicts as an aligned text table (numbers right-aligned, `digits` significant)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[_cell(row.get(c, ""), digits) for c in columns] for row in rows]
    numeric = [all(_is_number(row.get(c)) for row in rows) for c in columns]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 4) -> None:
    print(format_table(rows, columns, digits))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays, paths: whatever json cannot take natively
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def single_domain_or_official(test: Any, scores: Mapping[str, float]) -> float:
    """The DCASE official score of `scores` on a test manifest; a test set with one domain only (the
    generated timing machines) gets the same harmonic mean of its AUC and pAUC (p = 0.1)."""
    from scipy.stats import hmean
    from sklearn.metrics import roc_auc_score

    from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest

    records = [r for r in test.records if r.is_labelled]
    if {r.domain for r in records if r.label == "normal"} >= {"source", "target"}:
        return float(evaluate_scores(ground_truth_from_manifest(test), scores).overall.official)
    labels = [r.label == "anomaly" for r in records]
    values = [scores[r.name] for r in records]
    return float(hmean([roc_auc_score(labels, values), roc_auc_score(labels, values, max_fpr=0.1)]))
