"""Validate a manifest before anything trains on it: `validate_dataset`, `raise_on_failure`.

Without quarantine, any failing expectation (or any file the reader could not
parse) fails the run, naming every failing clip and expectation. With
quarantine, clips that fail a clip-level expectation are left out of the kept
manifest and listed with their reasons; the dataset-level expectations (both
domains present, minimum counts) are then checked again on what is kept, and
still fail the run, because dropping clips cannot fix them. Nothing on disk is
deleted or moved.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from asdflow.config import AsdflowConfig, ValidationConfig
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError
from asdflow.validation.clip_stats import clip_id, stats_frame
from asdflow.validation.report import write_html, write_json, write_quarantine
from asdflow.validation.suite import GxRunner, Outcome, clip_suite, group_suite, group_table, unlabelled_test

READER_KEY = "reader"
MAX_LISTED = 5  # clips named in the one-line error message; the report names them all


class ExpectationResult(BaseModel):
    key: str  # e.g. "sample_rate", "duration[fan]", "min_test"
    expectation: str  # the GX expectation type, or "reader" for the manifest reader's problems
    description: str
    level: Literal["clip", "dataset", "reader"]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    success: bool
    failing: list[str] = Field(default_factory=list)  # clip ids (clip level) or groups (dataset level)
    observed: str | None = None
    error: str | None = None  # GX raised while evaluating it (counted as a failure)


class QuarantinedClip(BaseModel):
    name: str
    path: str
    clip_id: str
    reasons: list[str]


class ValidationResult(BaseModel):
    success: bool  # the pipeline may go on (with the kept manifest)
    quarantine: bool
    n_clips: int
    n_kept: int
    expectations: list[ExpectationResult]  # on the whole manifest
    after_quarantine: list[ExpectationResult] = Field(default_factory=list)  # dataset level, on the kept clips
    failing_clips: dict[str, list[str]] = Field(default_factory=dict)  # clip id -> reasons
    quarantined: list[QuarantinedClip] = Field(default_factory=list)
    kept_manifest: Manifest
    report_json: str
    report_html: str
    quarantine_json: str | None = None
    kept_manifest_csv: str | None = None
    clip_stats_csv: str
    elapsed_s: float = 0.0
    # with `isolate`: machine types left out because their clips or groups failed -> the failed checks
    failed_machine_types: dict[str, list[str]] = Field(default_factory=dict)

    def failed_expectations(self) -> list[ExpectationResult]:
        """What blocks the run: everything that failed, or with quarantine what still fails."""
        if self.quarantine:
            return [e for e in self.after_quarantine if not e.success]
        return [e for e in self.expectations if not e.success]


def validate_dataset(
    manifest: Manifest,
    config: ValidationConfig,
    out_dir: str | Path,
    quarantine: bool | None = None,
    progress: bool = True,
) -> ValidationResult:
    """Check every clip and the dataset as a whole; write validation.json/.html (and
    quarantine.json + the kept manifest when quarantining) into `out_dir`."""
    started = time.perf_counter()
    quarantine = config.quarantine if quarantine is None else quarantine
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    clips = stats_frame(manifest, config.clipping_level, config.stats_workers, progress)
    clip_ids = clips["clip_id"].tolist()
    stats_csv = out / "clip_stats.csv"
    clips.to_csv(stats_csv, index=False)

    machine_types = sorted(clips["machine_type"].dropna().unique().tolist())
    runner = GxRunner()
    runner.register("clips", clip_suite(config, machine_types))
    runner.register("groups", group_suite(config, machine_types, unlabelled_test(clips, machine_types)))

    groups = group_table(clips, machine_types)
    outcomes = runner.run("clips", clips) + runner.run("groups", groups)
    results = [_to_result(o, clips, groups) for o in outcomes] + [_reader_result(manifest)]

    failing_clips = _reasons_by_clip(outcomes, clips)
    reader_problems = {clip_id(manifest.root, p.path): p for p in manifest.problems}
    for cid, problem in reader_problems.items():
        failing_clips.setdefault(cid, []).append(f"manifest reader: {problem.reason}")

    quarantined: list[QuarantinedClip] = []
    after: list[ExpectationResult] = []
    kept_manifest = manifest
    if quarantine:
        bad = {cid for cid in failing_clips if cid not in reader_problems}
        keep = [cid not in bad for cid in clip_ids]
        kept_manifest = Manifest(
            root=manifest.root,
            records=[r for r, k in zip(manifest.records, keep) if k],
            # the reader's problems are recorded in quarantine.json; the kept manifest is the clean
            # set, so validating it again (as a later stage may) passes
            problems=[],
        )
        for record, cid, k in zip(manifest.records, clip_ids, keep):
            if not k:
                quarantined.append(QuarantinedClip(name=record.name, path=record.path, clip_id=cid, reasons=failing_clips[cid]))
        for cid, problem in reader_problems.items():
            quarantined.append(QuarantinedClip(
                name=Path(problem.path).name, path=problem.path, clip_id=cid, reasons=failing_clips[cid]
            ))
        kept_clips = clips[keep]
        dataset_level = [o for o in runner.run("clips", kept_clips) if o.planned.level == "dataset"]
        kept_groups = group_table(kept_clips, machine_types)
        dataset_level += runner.run("groups", kept_groups)
        after = [_to_result(o, kept_clips, kept_groups) for o in dataset_level]
        # an expectation GX could not evaluate blames no clip, so dropping clips cannot settle it
        after += [r for r in results if r.error and r.level == "clip"]
        success = all(e.success for e in after)
    else:
        success = all(e.success for e in results)

    result = ValidationResult(
        success=success,
        quarantine=quarantine,
        n_clips=len(manifest.records),
        n_kept=len(kept_manifest.records),
        expectations=results,
        after_quarantine=after,
        failing_clips=failing_clips,
        quarantined=quarantined,
        kept_manifest=kept_manifest,
        report_json=str(out / "validation.json"),
        report_html=str(out / "validation.html"),
        quarantine_json=str(out / "quarantine.json") if quarantine else None,
        kept_manifest_csv=str(kept_manifest.save(out)) if quarantine else None,
        clip_stats_csv=str(stats_csv),
    )
    result.elapsed_s = round(time.perf_counter() - started, 3)
    write_json(result, out / "validation.json")
    write_html(result, out / "validation.html")
    if quarantine:
        write_quarantine(result, out / "quarantine.json")
    return result


def validate_stage(
    data_dir: str | Path,
    config: AsdflowConfig | ValidationConfig,
    out_dir: str | Path,
    manifest_dir: str | Path | None = None,
    machine_types: list[str] | None = None,
    quarantine: bool | None = None,
    progress: bool | None = None,
    isolate: bool = False,
) -> ValidationResult:
    """The validate stage of a pipeline: read the clips under `data_dir` (of `machine_types`, None =
    all), validate them (reports into `out_dir`), stop with DataError when the run must stop, else
    save the kept manifest into `manifest_dir` (default `out_dir`) and return the result.

    The manifest is built from the clips themselves: a manifest.csv versioned with the data
    would name another folder. `progress` None: the config's (False for a bare ValidationConfig).
    `isolate` (the fleet): machine types that fail are left out and named, the others go on."""
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.data.versioning import carry_lineage

    if progress is None:
        progress = config.progress if isinstance(config, AsdflowConfig) else False
    validation = config.validation if isinstance(config, AsdflowConfig) else config
    clips = build_manifest(data_dir, machine_types or None, progress=progress)
    result = validate_dataset(clips, validation, out_dir, quarantine=quarantine, progress=progress)
    if isolate and not result.success:
        result = isolate_machine_types(result)
        write_json(result, Path(out_dir) / "validation.json")
    result = raise_on_failure(result)
    target = manifest_dir if manifest_dir is not None else out_dir
    result.kept_manifest.save(target)
    carry_lineage(data_dir, target)  # which data these clips are (the fetch step's record), for later steps
    return result


def isolate_machine_types(result: ValidationResult) -> ValidationResult:
    """The machine types whose clips and groups pass, when others fail: the failing ones are left out
    of the kept manifest and named with their failed checks (a fleet trains the rest). When every
    machine type fails, or a check failed without naming clips or groups, the result stays failed."""
    checks = result.after_quarantine if result.quarantine else result.expectations
    blamed: dict[str, list[str]] = {}
    for check in (c for c in checks if not c.success):
        # rows (clip ids, groups) start with the machine type; a per-machine check names it in its key
        named = [item.split("/", 1)[0] for item in check.failing] or re.findall(r"\[([^/\]]+)", check.key)
        if not named or check.error:  # GX could not evaluate it, or it blames no machine type
            return result
        for machine in named:
            blamed.setdefault(machine, []).append(check.key)
    for cid in result.failing_clips if not result.quarantine else []:
        blamed.setdefault(cid.split("/", 1)[0], []).append("clip checks")
    machines = set(result.kept_manifest.machine_types())
    if not machines - set(blamed):
        return result
    kept = Manifest(root=result.kept_manifest.root,
                    records=[r for r in result.kept_manifest.records if r.machine_type not in blamed])
    failed = {m: sorted(set(keys)) for m, keys in sorted(blamed.items())}
    return result.model_copy(update={"success": True, "kept_manifest": kept, "n_kept": len(kept.records),
                                     "failed_machine_types": failed})


def raise_on_failure(result: ValidationResult) -> ValidationResult:
    """Raise DataError with one clear message when the run must stop; else return the result.

    The message: how many clips fail, each failed expectation (with its failing
    groups, for dataset-level ones), the first few clips with their reasons, and
    the HTML report that lists everything."""
    if result.success:
        return result
    failed = result.failed_expectations()
    parts = []
    for e in failed:
        if e.level == "dataset":
            detail = ", ".join(e.failing[:MAX_LISTED]) or e.observed or e.error or "failed"
        else:
            detail = f"{len(e.failing)} clip{'s' if len(e.failing) != 1 else ''}" if e.failing else e.error or "failed"
        parts.append(f"{e.description} [{detail}]")
    if result.quarantine:
        head = (
            f"data validation failed even after quarantining {len(result.quarantined)} clip(s) "
            f"({result.n_kept} of {result.n_clips} kept): dropping clips cannot fix this"
        )
    elif result.failing_clips:
        head = f"data validation failed: {len(result.failing_clips)} failing clip(s) of {result.n_clips}"
    else:
        head = f"data validation failed on the dataset as a whole ({result.n_clips} clips, none failing on its own)"
    message = f"{head}. Failed: {'; '.join(parts)}."
    if not result.quarantine and result.failing_clips:
        listed = list(result.failing_clips.items())[:MAX_LISTED]
        examples = "; ".join(f"{cid} ({', '.join(reasons)})" for cid, reasons in listed)
        more = len(result.failing_clips) - len(listed)
        message += f" Clips: {examples}{f'; ... and {more} more' if more else ''}."
    message += f" Full report: {result.report_html}"
    raise DataError(message)


def _to_result(outcome: Outcome, clips: pd.DataFrame, groups: pd.DataFrame) -> ExpectationResult:
    planned = outcome.planned
    frame, id_column = (groups, "group") if outcome.table == "groups" else (clips, "clip_id")
    failing = [str(frame.at[i, id_column]) for i in outcome.failing_rows]
    return ExpectationResult(
        key=planned.key,
        expectation=type(planned.expectation).__name__,
        description=planned.description,
        level=planned.level,
        kwargs=outcome.kwargs,
        success=outcome.success,
        failing=failing,
        observed=outcome.observed,
        error=outcome.error,
    )


def _reasons_by_clip(outcomes: list[Outcome], clips: pd.DataFrame) -> dict[str, list[str]]:
    """clip id -> 'description (got value)' for every failed clip-level expectation, in clip order."""
    reasons: dict[int, list[str]] = {}
    for outcome in outcomes:
        planned = outcome.planned
        if planned.level != "clip":
            continue
        if outcome.error and not outcome.failing_rows:
            continue  # an expectation GX could not evaluate blames no clip; it fails as a whole
        for row in outcome.failing_rows:
            got = clips.at[row, planned.explain_column] if planned.explain_column else None
            text = planned.description if got is None or _missing(got) else f"{planned.description}: {planned.explain_as} {_fmt(got)}"
            reasons.setdefault(row, []).append(text)
    return {clips.at[row, "clip_id"]: reasons[row] for row in sorted(reasons)}


def _reader_result(manifest: Manifest) -> ExpectationResult:
    return ExpectationResult(
        key=READER_KEY,
        expectation="reader",
        description="every file in the dataset folder was parsed and read by the manifest reader",
        level="reader",
        success=not manifest.problems,
        failing=[clip_id(manifest.root, p.path) for p in manifest.problems],
        observed=json.dumps([p.reason for p in manifest.problems][:MAX_LISTED]) if manifest.problems else None,
    )


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
