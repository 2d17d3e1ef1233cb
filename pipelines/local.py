"""Run a pipeline on this machine with kfp.local: each step a subprocess of this interpreter.

`SubprocessRunner(use_venv=False)`: the steps run in the project's own environment
(no per-step venv, no pip install, no network). Images, accelerators, node
selectors, tolerations and Secrets are cluster settings kfp.local ignores.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Any

from kfp import local
from kfp.dsl.graph_component import GraphComponent
from pydantic import BaseModel

from asdflow.config import AsdflowConfig, deep_merge
from asdflow.errors import AsdflowError, one_line
from asdflow.pipeline_ops import encode_overrides, local_data_version, local_tracking_overrides
from asdflow.registry.gate import DECISION_FILE, GateDecision
from pipelines.fleet import build_fleet_pipeline
from pipelines.training import build_training_pipeline


class PipelineRunError(AsdflowError):
    """A step of a locally run pipeline failed (its log is printed above the error)."""


class LocalRun(BaseModel):
    pipeline: str
    arguments: dict[str, Any]
    outputs: dict[str, Any]
    pipeline_root: str  # every run's artifacts live under it
    run_dir: str | None  # this run's folder: <pipeline_root>/<pipeline>-<timestamp>/<task>/<output>
    seconds: float


def init_local(pipeline_root: str | Path) -> Path:
    """Point kfp.local at `pipeline_root`; steps run as subprocesses of this interpreter."""
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    return root


def run_local(pipeline: GraphComponent, arguments: dict[str, Any], pipeline_root: str | Path) -> LocalRun:
    """Run `pipeline` with `arguments` to the end; raise PipelineRunError naming the failed run's folder."""
    root = init_local(pipeline_root)
    before = {p.name for p in root.iterdir()}
    started = time.perf_counter()
    with warnings.catch_warnings():
        # the project image's name has no "python" in it; kfp.local warns about every step
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        # display names, accelerators, Secrets...: cluster settings, ignored here by design
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        try:
            result = pipeline(**arguments)
        except RuntimeError as err:
            run_dir = _new_run_dir(root, pipeline.name, before)
            raise PipelineRunError(
                f"pipeline {pipeline.name} failed: {one_line(err)} "
                f"(the failing step's log is above; its files are under {run_dir or root})"
            ) from None
    outputs = dict(result.outputs) if getattr(result, "outputs", None) else {}
    run_dir = _new_run_dir(root, pipeline.name, before)
    return LocalRun(
        pipeline=pipeline.name, arguments=dict(arguments), outputs={k: _plain(v) for k, v in outputs.items()},
        pipeline_root=str(root), run_dir=str(run_dir) if run_dir else None,
        seconds=round(time.perf_counter() - started, 2),
    )


def _new_run_dir(root: Path, name: str, before: set[str]) -> Path | None:
    runs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(f"{name}-") and p.name not in before)
    return runs[-1] if runs else None


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return getattr(value, "uri", None) or str(value)


def gate_decisions(run_dir: str | Path) -> dict[str, GateDecision]:
    """machine type -> the gate's decision record found in a run's folder; the promote step's
    copy (with the promotion's outcome) wins over the gate's own."""
    found: dict[str, GateDecision] = {}
    for path in sorted(Path(run_dir).rglob(DECISION_FILE)):
        decision = GateDecision.load(path)
        if decision.machine_type not in found or decision.promotion is not None:
            found[decision.machine_type] = decision
    return found


class MachineResult(BaseModel):
    """One machine type's outcome of a local run, from the gate's decision record."""

    machine_type: str
    verdict: str  # promote | keep | reject
    reason: str
    metric: str
    challenger_version: str
    challenger_score: float  # on the gate's metric, as the gate measured it
    official: float  # the challenger's DCASE scores on the evaluation clips
    auc_source: float
    auc_target: float
    pauc: float
    champion_before: str | None  # @champion the gate compared against (None: there was none)
    champion_before_score: float | None
    champion_after: str | None  # @champion when the run ended
    run_dir: str


def summarize(run: LocalRun) -> list[MachineResult]:
    results = []
    for machine, d in sorted(gate_decisions(run.run_dir or run.pipeline_root).items()):
        ch = d.challenger
        results.append(MachineResult(
            machine_type=machine, verdict=d.verdict, reason=d.reason, metric=d.metric,
            challenger_version=ch.version, challenger_score=ch.score, official=ch.official,
            auc_source=ch.auc_source, auc_target=ch.auc_target, pauc=ch.pauc,
            champion_before=d.champion_version_seen, champion_before_score=d.champion.score if d.champion else None,
            champion_after=d.promotion.version if d.promotion else d.champion_version_seen,
            run_dir=str(run.run_dir),
        ))
    return results


class LocalRunsReport(BaseModel):
    runs: list[LocalRun]
    results: list[MachineResult]  # one per machine type whose gate decided
    failures: dict[str, str]  # machine type (or "fleet") -> why its run failed


def run_locally(
    config: AsdflowConfig,
    machine_types: list[str],
    project: str | Path,
    work_dir: str | Path,
    data_version: str | None = None,
    fleet: bool = False,
) -> LocalRunsReport:
    """The training pipeline of each machine type (or one fleet run over all of them) on this machine.

    The steps get exactly `config`: its whole content travels as the overrides, with
    relative MLflow paths made absolute against `project`, so every subprocess shares
    one store. The steps run with `project` as their working folder (kfp.local starts
    them in this process's), so MLflow records its git commit and data.dvc hash.
    `data_version`: a git revision of data.dvc in `project`, or `workspace`; default:
    the last committed one, else the workspace (`asdflow.pipeline_ops.local_data_version`).
    Machine types run one after the other (2 cores, one SQLite store); one that fails
    is listed in `failures` and the others still run.
    """
    project, work_dir = Path(project).resolve(), Path(work_dir).resolve()
    overrides = deep_merge(config.model_dump(mode="json", exclude={"profile"}),
                           local_tracking_overrides(config, project))
    arguments = {
        "project": str(project),
        "data_version": data_version or local_data_version(project, config),
        "config_profile": config.profile,
        "config_overrides": encode_overrides(overrides),
    }
    if fleet:
        jobs = [("fleet", build_fleet_pipeline(config, gpu=False, parallelism=1),
                 {"machine_types": ",".join(machine_types), **arguments})]
    else:
        pipeline = build_training_pipeline(config, gpu=False)
        jobs = [(m, pipeline, {"machine_type": m, **arguments}) for m in machine_types]
    runs, failures = [], {}
    with contextlib.chdir(project):
        for label, built, job_arguments in jobs:
            try:
                runs.append(run_local(built, job_arguments, work_dir))
            except PipelineRunError as err:
                failures[label] = str(err)
    return LocalRunsReport(runs=runs, results=[r for run in runs for r in summarize(run)], failures=failures)
