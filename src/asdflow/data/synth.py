"""The synthetic machine-sound generator: a DCASE-layout dataset, deterministic from a seed.

    synthesize_dataset(SynthConfig(machine_types=["fan", "pump"]), "data/synth")

writes, per machine type and section XX:
    <out>/<mt>/train/section_XX_{source|target}_train_normal_NNNN_<attrs>.wav
    <out>/<mt>/test/section_XX_{source|target}_test_{normal|anomaly}_NNNN_<attrs>.wav
    <out>/<mt>/supplemental/section_XX_source_supplemental_{clean|noise}_NNNN_<attrs>.wav
    <out>/<mt>/attributes_XX.csv      file_name,d1p,d1v,... (file_name like train/<name>.wav)
    <out>/synth_metadata.json         per clip ground truth (anomaly kind, severity, seed...)
with attributes `speed_<rpm>_load_<percent>_bg_<background>` (clean clips: bg_none; noise-only
clips: speed_0_load_0, the machine stopped).

Domains: the target domain runs at other speeds and a heavier load, over another, louder
background (the profile's target background, SNR `snr_db_target`), so a detector trained
mostly on source clips does worse on target unless it generalises.

Determinism: every clip draws from its own seed, derived with numpy's SeedSequence from
(seed, machine type, section, split, domain, label, index); a machine type generated alone
gives the same bytes as among others, and the order of generation does not matter.

An existing output folder: the files this run writes are overwritten, nothing else is
touched or deleted (stale clips of an earlier, larger run stay; the summary counts them).
synth_metadata.json keeps the entries of machine types this run did not generate.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from asdflow.config import SynthConfig
from asdflow.data.audio import write_audio
from asdflow.data.synth_anomalies import FaultContext, apply_anomaly
from asdflow.data.synth_physics import (
    MachineProfile,
    OperatingPoint,
    db,
    machine_profile,
    render_background,
    render_machine,
    stable_int,
)
from asdflow.errors import ConfigError, DataError
from asdflow.progress import progress_bar

METADATA_FILE = "synth_metadata.json"
METADATA_VERSION = 1
_SPLIT = {"train": 0, "test": 1, "supplemental": 2}
_DOMAIN = {"source": 0, "target": 1}
_KIND = {"normal": 0, "anomaly": 1, "clean": 2, "noise": 3}
_KIND_ASSIGNMENT = 9  # spawn-key slot of the per-domain shuffle of anomaly kinds
MAX_AUTO_WORKERS = 4
CHUNK = 16  # clips per task handed to a worker
SPEED_SPREAD = 0.01  # actual speed within +-1 % of the nominal one in the name


class ClipSpec(BaseModel):
    """Everything that decides one clip: its name, its hidden ground truth and its seed."""

    name: str
    path: str  # relative to the output folder: <machine_type>/<split>/<name>
    machine_type: str
    section: str
    split: str  # train | test | supplemental
    domain: str  # source | target
    label: str | None  # normal | anomaly; None for supplemental clips
    supplemental_kind: str | None = None  # clean | noise
    index: int
    attributes: dict[str, str]
    speed_rpm: float  # actual mean speed (0: machine stopped)
    load: float
    background: str | None  # None: no background (clean clips)
    snr_db: float | None  # machine-to-background; for noise clips the SNR the noise level stands for
    level_dbfs: float  # machine RMS in the file
    anomaly_kind: str | None = None
    severity: float | None = None
    seed: int


class SynthSummary(BaseModel):
    out_dir: str
    counts: dict[str, dict[str, int]]  # machine type -> {train_source, train_target, test_normal, ...}
    n_files: int  # wav files written
    seconds: float
    metadata_path: str
    untouched_files: int  # wav files already in the machine folders that this run did not write


def clip_seed(seed: int, machine_type: str, section: str, split: str, domain: str, kind: str, index: int) -> int:
    """A 64-bit seed for one clip, independent of which other clips are generated."""
    key = (stable_int(machine_type), int(section), _SPLIT[split], _DOMAIN[domain], _KIND[kind], index)
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0])


def _sub_seeds(seed: int) -> tuple[np.random.Generator, int, int, int]:
    """(planning rng, machine seed, background seed, fault seed) of a clip seed."""
    children = np.random.SeedSequence(seed).spawn(4)
    ints = [int(c.generate_state(1, np.uint64)[0]) for c in children[1:]]
    return np.random.default_rng(children[0]), ints[0], ints[1], ints[2]


def assign_anomaly_kinds(config: SynthConfig, machine_type: str, section: str, domain: str, n: int) -> list[str]:
    """n kinds in proportion to the weights (largest remainder), in a seeded random order."""
    kinds = config.enabled_anomaly_kinds()
    names = list(kinds)
    weights = np.array([kinds[k].weight for k in names], dtype=float)
    quotas = n * weights / weights.sum()
    counts = np.floor(quotas).astype(int)
    # Stable sort: ties go to the kind listed first, so the assignment never depends on float noise order.
    for i in np.argsort(-(quotas - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    assigned = [k for k, c in zip(names, counts) for _ in range(c)]
    key = (stable_int(machine_type), int(section), _KIND_ASSIGNMENT, _DOMAIN[domain])
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=key))
    return [assigned[i] for i in rng.permutation(n)]


def _clip_name(section: str, domain: str, split: str, kind: str, index: int, attrs: dict[str, str]) -> str:
    tail = "_".join(f"{k}_{v}" for k, v in attrs.items())
    return f"section_{section}_{domain}_{split}_{kind}_{index:04d}_{tail}.wav"


def plan_clip(
    config: SynthConfig,
    profile: MachineProfile,
    section: str,
    split: str,
    domain: str,
    kind: str,
    index: int,
    anomaly_kind: str | None = None,
) -> ClipSpec:
    """Draw one clip's operating point, background and severity from its own seed."""
    machine_type = profile.name
    seed = clip_seed(config.seed, machine_type, section, split, domain, kind, index)
    rng = _sub_seeds(seed)[0]
    target = domain == "target"
    speeds = profile.target_speeds_rpm if target else profile.source_speeds_rpm
    loads = profile.target_loads if target else profile.source_loads
    nominal = int(speeds[rng.integers(len(speeds))])
    load = int(loads[rng.integers(len(loads))])
    speed = nominal * (1.0 + rng.uniform(-SPEED_SPREAD, SPEED_SPREAD))
    background = profile.target_background if target else profile.source_background
    snr = float(rng.uniform(*(config.snr_db_target if target else config.snr_db_source)))
    level = profile.level_dbfs + float(rng.uniform(-1.0, 1.0))  # microphone gain varies a little
    severity = None
    if anomaly_kind is not None:
        base = config.enabled_anomaly_kinds()[anomaly_kind].severity
        base = config.severity if base is None else base
        severity = float(np.clip(base + rng.uniform(-config.severity_spread, config.severity_spread), 0.0, 1.0))
    if kind == "clean":
        attrs, background_used, snr_used = {"speed": str(nominal), "load": str(load), "bg": "none"}, None, None
    elif kind == "noise":
        attrs, background_used, snr_used = {"speed": "0", "load": "0", "bg": background}, background, snr
        speed, load = 0.0, 0
    else:
        attrs, background_used, snr_used = {"speed": str(nominal), "load": str(load), "bg": background}, background, snr
    name = _clip_name(section, domain, split, kind, index, attrs)
    supplemental = split == "supplemental"
    return ClipSpec(
        name=name,
        path=f"{machine_type}/{split}/{name}",
        machine_type=machine_type,
        section=section,
        split=split,
        domain=domain,
        label=None if supplemental else kind,
        supplemental_kind=kind if supplemental else None,
        index=index,
        attributes=attrs,
        speed_rpm=round(speed, 3),
        load=float(load),
        background=background_used,
        snr_db=None if snr_used is None else round(snr_used, 3),
        level_dbfs=round(level, 3),
        anomaly_kind=anomaly_kind,
        severity=None if severity is None else round(severity, 4),
        seed=seed,
    )


def plan_machine_type(config: SynthConfig, machine_type: str) -> list[ClipSpec]:
    """Every clip of one machine type, in writing order (train, test, supplemental per section)."""
    specs: list[ClipSpec] = []
    for section in config.sections:
        profile = machine_profile(machine_type, section)

        def add(split: str, domain: str, kind: str, n: int, kinds: list[str] | None = None) -> None:
            for i in range(n):
                specs.append(plan_clip(config, profile, section, split, domain, kind, i, kinds[i] if kinds else None))

        add("train", "source", "normal", config.n_train_source)
        add("train", "target", "normal", config.n_train_target)
        for domain in ("source", "target"):
            n = config.n_test_per_condition
            add("test", domain, "normal", n)
            add("test", domain, "anomaly", n, assign_anomaly_kinds(config, machine_type, section, domain, n))
        add("supplemental", "source", "clean", config.n_supplemental_clean)
        add("supplemental", "source", "noise", config.n_supplemental_noise)
    return specs


def render_clip(spec: ClipSpec, config: SynthConfig) -> np.ndarray:
    """The waveform (float32, at config.sample_rate) of a planned clip."""
    sr = config.sample_rate
    n = int(round(config.duration * sr))
    _, machine_seed, background_seed, fault_seed = _sub_seeds(spec.seed)
    wave = np.zeros(n)
    if spec.supplemental_kind != "noise":
        profile = machine_profile(spec.machine_type, spec.section)
        op = OperatingPoint(speed_rpm=spec.speed_rpm, load=spec.load)
        machine = render_machine(profile, op, n, sr, machine_seed)
        wave = machine.wave
        if spec.anomaly_kind is not None:
            ctx = FaultContext(machine, profile, op, sr, machine_seed, np.random.default_rng(fault_seed))
            wave = apply_anomaly(spec.anomaly_kind, spec.severity or 0.0, ctx)
    if spec.background is not None and spec.snr_db is not None:
        wave = wave + db(-spec.snr_db) * render_background(spec.background, n, sr, background_seed)
    return (db(spec.level_dbfs) * wave).astype(np.float32)


def _validated(config: SynthConfig | Mapping[str, Any]) -> SynthConfig:
    # Re-validate even a SynthConfig: fields assigned after construction are not checked by pydantic.
    data = config.model_dump() if isinstance(config, SynthConfig) else dict(config)
    try:
        return SynthConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "synth"
        raise ConfigError(f"invalid synth config: synth.{where}: {first['msg']}") from None


def _render_chunk(specs: list[ClipSpec], config: SynthConfig, out: Path) -> list[str]:
    return [str(write_audio(out / s.path, render_clip(s, config), config.sample_rate).resolve()) for s in specs]


def _worker_count(requested: int | None, clip_seconds: float) -> int:
    if requested is not None:
        return max(1, requested)
    # A pool costs a fork and a little bookkeeping: worth it from a few minutes of audio on.
    return min(os.cpu_count() or 1, MAX_AUTO_WORKERS) if clip_seconds >= 300 else 1


def _render_all(specs: list[ClipSpec], config: SynthConfig, out: Path, progress: bool, workers: int) -> set[Path]:
    """Render and write every clip; each clip is a function of its own seed, so any split works."""
    written: set[Path] = set()
    # fork: workers inherit the imported modules and need no importable __main__ (spawn would
    # re-run an unguarded calling script). Where fork is missing, or this process is a daemon
    # (which may not have children), render in this process.
    can_fork = "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon
    if workers > 1 and can_fork:
        chunks = [specs[i : i + CHUNK] for i in range(0, len(specs), CHUNK)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_render_chunk, chunk, config, out) for chunk in chunks]
            paths = (p for future in as_completed(futures) for p in future.result())
            written.update(Path(p) for p in progress_bar(paths, "synthesize clips", progress, len(specs)))
    else:
        paths = (p for spec in specs for p in _render_chunk([spec], config, out))
        written.update(Path(p) for p in progress_bar(paths, "synthesize clips", progress, len(specs)))
    return written


def _write_attributes(machine_dir: Path, section: str, specs: list[ClipSpec]) -> Path:
    rows = [[f"{s.split}/{s.name}"] + [x for kv in s.attributes.items() for x in kv] for s in specs]
    width = max((len(r) for r in rows), default=1)
    header = ["file_name"] + [f"d{i}{c}" for i in range(1, (width - 1) // 2 + 1) for c in ("p", "v")]
    path = machine_dir / f"attributes_{section}.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(r + [""] * (width - len(r)) for r in rows)
    return path


def _merge_metadata(path: Path, config: SynthConfig, specs: list[ClipSpec]) -> None:
    """Write the ground truth, keeping the entries of machine types generated by earlier runs."""
    kept_types: dict[str, Any] = {}
    kept_clips: list[dict[str, Any]] = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
            kept_types = {k: v for k, v in old.get("machine_types", {}).items() if k not in config.machine_types}
            kept_clips = [c for c in old.get("clips", []) if c.get("machine_type") in kept_types]
        except (json.JSONDecodeError, AttributeError, TypeError):
            kept_types, kept_clips = {}, []  # unreadable: ours to rewrite (it is the file we own)
    per_type = {
        mt: {
            "config": config.model_dump(mode="json", exclude={"machine_types"}),
            "profiles": {s: machine_profile(mt, s).model_dump(mode="json") for s in config.sections},
        }
        for mt in config.machine_types
    }
    document = {
        "generator": "asdflow.data.synth",
        "version": METADATA_VERSION,
        "machine_types": {**kept_types, **per_type},
        "clips": kept_clips + [s.model_dump(mode="json") for s in specs],
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")


def _count(specs: list[ClipSpec]) -> dict[str, int]:
    keys = {
        "train_source": lambda s: s.split == "train" and s.domain == "source",
        "train_target": lambda s: s.split == "train" and s.domain == "target",
        "test_normal": lambda s: s.split == "test" and s.label == "normal",
        "test_anomaly": lambda s: s.split == "test" and s.label == "anomaly",
        "supplemental_clean": lambda s: s.supplemental_kind == "clean",
        "supplemental_noise": lambda s: s.supplemental_kind == "noise",
    }
    return {k: sum(1 for s in specs if test(s)) for k, test in keys.items()}


def synthesize_dataset(
    config: SynthConfig | Mapping[str, Any],
    out_dir: str | Path,
    progress: bool = True,
    workers: int | None = None,
) -> SynthSummary:
    """Write the synthetic DCASE-layout dataset of `config` into `out_dir` (see the module doc).

    `workers`: processes rendering clips (None: one per CPU core, up to 4, when the job is
    big enough to pay for them). The output does not depend on it.
    """
    started = time.perf_counter()
    config = _validated(config)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    plans = {mt: plan_machine_type(config, mt) for mt in config.machine_types}
    existing = {p.resolve() for mt in config.machine_types for p in (out / mt).rglob("*.wav")}
    every = [s for specs in plans.values() for s in specs]
    written = _render_all(every, config, out, progress, _worker_count(workers, len(every) * config.duration))
    for mt, specs in plans.items():
        (out / mt).mkdir(parents=True, exist_ok=True)
        for section in config.sections:
            _write_attributes(out / mt, section, [s for s in specs if s.section == section])
    metadata = out / METADATA_FILE
    _merge_metadata(metadata, config, every)
    return SynthSummary(
        out_dir=str(out),
        counts={mt: _count(specs) for mt, specs in plans.items()},
        n_files=len(written),
        seconds=round(time.perf_counter() - started, 3),
        metadata_path=str(metadata),
        untouched_files=len(existing - written),
    )
