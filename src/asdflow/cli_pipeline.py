"""`asdflow pipeline compile|run --local|submit|schedule`: the KFP pipelines from the command line.

A thin shell: it parses options, builds the pipeline from the config, and calls one
function of `pipelines/` (compile, local run, submit, schedule reconciliation).
kfp is imported only inside the commands (`pipelines/` and `components/` live at
the project root, beside src/), so `asdflow --help` stays fast and the library
stays free of KFP. Mounted by `asdflow.cli` as `app.add_typer(pipeline_app, name="pipeline")`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from asdflow.config import AsdflowConfig, load_config
from asdflow.errors import ConfigError
from asdflow.pipeline_ops import (
    LATEST_REVISION,
    cluster_project,
    encode_overrides,
    ensure_pipelines_importable,
    local_data_version,
    local_tracking_overrides,
    user_overrides,
)

pipeline_app = typer.Typer(
    no_args_is_help=True,
    help="Kubeflow Pipelines: compile, run locally (kfp.local), submit to a cluster, reconcile schedules.",
)

PIPELINES = ("training", "fleet")
DEFAULT_EXPERIMENT = "asdflow"

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config, merged over the profile.")]
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p", help="tiny | demo | full (default: demo).")]
PipelineOpt = Annotated[
    str, typer.Option("--pipeline", help="training (a run per machine type) | fleet (all of them, ParallelFor)")
]
MachineOpt = Annotated[
    Optional[list[str]],
    typer.Option("--machine-type", "-m", help="Only these machine type(s); default: every machine type in the data "
                                              "at --data-version (folders <data_dir>/<machine_type>/train|test)."),
]
GpuOpt = Annotated[bool, typer.Option("--gpu/--no-gpu", help="Detector training on the GPU node pool (cluster only).")]
HostOpt = Annotated[str, typer.Option("--host", help="Kubeflow Pipelines API endpoint, e.g. http://127.0.0.1:8888")]
ExperimentOpt = Annotated[str, typer.Option("--experiment", help="KFP experiment of the runs.")]
NamespaceOpt = Annotated[Optional[str], typer.Option("--namespace", help="KFP namespace (multi-user deployments).")]
TokenOpt = Annotated[
    Optional[str], typer.Option("--token", envvar="KFP_TOKEN", help="Bearer token for an authenticated endpoint.")
]
ClusterProjectOpt = Annotated[
    Optional[str],
    typer.Option("--project", help="The project as the cluster reaches it: a git URL holding data.dvc "
                                   "(default: this checkout's origin)."),
]


def _config(config: Optional[Path], profile: Optional[str], extra: dict[str, Any] | None = None) -> AsdflowConfig:
    return load_config(config, profile, extra or {})


def _build(which: str, config: AsdflowConfig, gpu: bool, parallelism: int = 0):
    if which not in PIPELINES:
        raise ConfigError(f"--pipeline {which!r}: choose one of {', '.join(PIPELINES)}")
    ensure_pipelines_importable()
    from pipelines import build_fleet_pipeline, build_training_pipeline

    if which == "fleet":
        return build_fleet_pipeline(config, gpu=gpu, parallelism=parallelism)
    return build_training_pipeline(config, gpu=gpu)


def _compile_to(pipeline, out: Path) -> Path:
    from pipelines.compile import compile_pipeline

    return compile_pipeline(pipeline, out)


def _machine_types(
    chosen: Optional[list[str]],
    project: str | Path,
    config: AsdflowConfig,
    rev: str,
    read_data: bool = True,
) -> list[str]:
    """`--machine-type` when given, else every machine type in the data at `rev`; says which.

    With `read_data` the chosen ones must be in the data as well (a typo fails here, not
    minutes into a run); without it they are taken as given (a submit whose data this
    machine cannot list, say).
    """
    from asdflow.data.dataset_machine_types import machine_types_at

    chosen = list(dict.fromkeys(chosen or []))
    if chosen and not read_data:
        typer.echo(f"machine types from --machine-type: {', '.join(chosen)}")
        return chosen
    found = machine_types_at(project, config.data, rev)
    if not chosen:
        typer.echo(f"machine types from the data at {rev}: {', '.join(found)}")
        return found
    missing = [m for m in chosen if m not in found]
    if missing:
        raise ConfigError(f"--machine-type {', '.join(missing)}: not in the data at {rev} (found: {', '.join(found)})")
    typer.echo(f"machine types from --machine-type, all in the data at {rev}: {', '.join(chosen)}")
    return chosen


def _fleet_machine_types(chosen: Optional[list[str]], rev: str) -> str:
    """The fleet pipeline's `machine_types` parameter: the chosen ones ("fan,valve"), else ""
    (every machine type the fleet finds in the data it fetches at `rev`, when it runs)."""
    chosen = list(dict.fromkeys(chosen or []))
    if chosen:
        typer.echo(f"machine types from --machine-type: {', '.join(chosen)}")
        return ",".join(chosen)
    typer.echo(f"machine types from the data at {rev}: every one the fleet pipeline finds when it runs")
    return ""


@pipeline_app.command("compile")
def compile_command(
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="YAML to write (default: runs/pipelines/<name>.yaml).")
    ] = None,
    pipeline: PipelineOpt = "training",
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    gpu: GpuOpt = True,
):
    """Compile a pipeline to its KFP YAML (images, GPU settings and Secrets from the config)."""
    cfg = _config(config, profile)
    built = _build(pipeline, cfg, gpu=gpu)
    from pipelines.compile import package_digest

    path = _compile_to(built, out or Path("runs") / "pipelines" / f"{built.name}.yaml")
    typer.echo(f"compiled {built.name} to {path} (sha256 {package_digest(path)[:16]})")


@pipeline_app.command("run")
def run_command(
    local: Annotated[bool, typer.Option("--local", help="Run on this machine with kfp.local (the only way here).")] = (
        False
    ),
    machine_type: MachineOpt = None,
    pipeline: PipelineOpt = "training",
    project: Annotated[Path, typer.Option(
        "--project", help="Project folder: the data (data.data_dir), data.dvc; relative MLflow paths start here."
    )] = Path("."),
    data_version: Annotated[
        Optional[str],
        typer.Option("--data-version", help="git revision of data.dvc, or 'workspace' (default: the last committed, "
                                            "else the workspace)."),
    ] = None,
    work_dir: Annotated[Path, typer.Option("--work-dir", help="The pipeline root: every step's outputs.")] = (
        Path("runs/pipeline")
    ),
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars in the steps.")] = False,
):
    """Run the pipeline end to end on this machine: each step a subprocess of this environment."""
    if not local:
        raise ConfigError("`asdflow pipeline run` runs on this machine only: add --local "
                          "(for a cluster use `asdflow pipeline submit --host URL`)")
    if pipeline not in PIPELINES:
        raise ConfigError(f"--pipeline {pipeline!r}: choose one of {', '.join(PIPELINES)}")
    cfg = _config(config, profile, {"progress": False} if quiet else {})
    if not project.is_dir():
        raise ConfigError(f"--project {project}: no such folder")
    data_version = data_version or local_data_version(project, cfg)
    machines = _machine_types(machine_type, project, cfg, data_version)
    ensure_pipelines_importable()
    from pipelines.local import PipelineRunError, run_locally

    typer.echo(f"running {pipeline} locally for {', '.join(machines)} (profile {cfg.profile}); step logs follow")
    report = run_locally(cfg, machines, project, work_dir, data_version, fleet=pipeline == "fleet")
    typer.echo("")
    if report.results:
        typer.echo(results_table(report.results))
    for result in report.results:
        typer.echo(f"{result.machine_type}: gate {result.verdict} ({result.reason})")
    for run in report.runs:
        typer.echo(f"{run.pipeline} took {run.seconds:.0f} s; outputs under {run.run_dir}")
    typer.echo(f"MLflow store: {local_tracking_overrides(cfg, project.resolve())['tracking']['tracking_uri']}")
    if report.failures:
        raise PipelineRunError("; ".join(f"{label}: {why}" for label, why in report.failures.items()))


def results_table(results) -> str:
    """Per machine type: the challenger's DCASE scores, the gate's verdict, @champion before and after."""
    def champion(r) -> str:
        now = f"v{r.champion_after}" if r.champion_after else "-"
        return now + (f" (was v{r.champion_before})" if r.champion_before and r.champion_before != r.champion_after
                      else "")

    def versus(r) -> str:  # both measured by the gate, on the same clips, in the same step
        if r.champion_before_score is None:
            return f"{r.challenger_score:.4f} vs -"
        return f"{r.challenger_score:.4f} vs {r.champion_before_score:.4f}"

    header = ("machine type", "official", "AUC source", "AUC target", "pAUC", "challenger", "gate",
              "challenger vs champion", "champion")
    rows = [header] + [(
        r.machine_type, f"{r.official:.4f}", f"{r.auc_source:.4f}", f"{r.auc_target:.4f}", f"{r.pauc:.4f}",
        f"v{r.challenger_version}", r.verdict, versus(r), champion(r),
    ) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


@pipeline_app.command("submit")
def submit_command(
    host: HostOpt,
    machine_type: MachineOpt = None,
    pipeline: PipelineOpt = "training",
    project: ClusterProjectOpt = None,
    data_version: Annotated[str, typer.Option("--data-version", help="git revision of data.dvc to train on (its machine "
                                                                     "types are the default).")] = (
        LATEST_REVISION
    ),
    experiment: ExperimentOpt = DEFAULT_EXPERIMENT,
    run_name: Annotated[
        Optional[str], typer.Option("--run-name", help="Default: <pipeline>-<machine type>-<time>.")
    ] = None,
    namespace: NamespaceOpt = None,
    token: TokenOpt = None,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    gpu: GpuOpt = True,
):
    """Compile and submit to Kubeflow Pipelines: one run per machine type (training) or one fleet run.

    The machine types: --machine-type, else every one in the data of --project at --data-version.
    """
    import tempfile

    ensure_pipelines_importable()  # pipelines/ sits beside src/, whatever the working directory
    from pipelines.remote import submit_run

    cfg = _config(config, profile)
    where = cluster_project(project)
    if pipeline == "fleet":
        batches = [("fleet", {"machine_types": _fleet_machine_types(machine_type, data_version)})]
    else:
        # --machine-type is taken as given: the cluster may reach data (a private remote) this machine cannot
        batches = [(m, {"machine_type": m})
                   for m in _machine_types(machine_type, where, cfg, data_version, read_data=False)]
    built = _build(pipeline, cfg, gpu=gpu)
    common = {"project": where, "data_version": data_version, "config_profile": cfg.profile,
              "config_overrides": encode_overrides(user_overrides(config))}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="asdflow-submit-") as tmp:
        package = _compile_to(built, Path(tmp) / f"{built.name}.yaml")
        for label, specific in batches:
            name = run_name if run_name and len(batches) == 1 else f"{built.name}-{label}-{stamp}"
            run = submit_run(host, package, {**specific, **common}, experiment=experiment, run_name=name,
                             service_account=cfg.cluster.service_account, namespace=namespace, token=token)
            typer.echo(f"submitted {run.name}: run {run.run_id} in experiment {experiment} ({run.experiment_id})")


@pipeline_app.command("schedule")
def schedule_command(
    host: HostOpt,
    file: Annotated[Path, typer.Option("--file", help="The schedules file.")] = Path("infra/schedules.yaml"),
    apply: Annotated[bool, typer.Option("--apply", help="Carry out the plan (default: only print it).")] = False,
    machine_type: Annotated[
        Optional[list[str]],
        typer.Option("--machine-type", "-m", help="Reconcile only these machine types' runs, leaving the others "
                                                  "alone (each must be in the data); default: all of them."),
    ] = None,
    project: ClusterProjectOpt = None,
    experiment: ExperimentOpt = DEFAULT_EXPERIMENT,
    namespace: NamespaceOpt = None,
    token: TokenOpt = None,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    gpu: GpuOpt = True,
):
    """Reconcile the recurring retraining runs with the schedules file's rule.

    The rule is expanded to one recurring run per machine type in the data of --project
    at the rule's data_revision (`latest`: HEAD), each `stagger_minutes` after the previous
    one, with the file's per-machine-type overrides. Creates missing runs, re-creates
    changed ones (delete + create), disables the ones disabled in the file and deletes
    those of machine types no longer in the data. Idempotent: a second --apply changes
    nothing. Cron: 6 fields (seconds first), UTC. Run it again when the data gains or
    loses a machine type.
    """
    import tempfile

    from asdflow.schedules import load_schedules

    ensure_pipelines_importable()
    from pipelines.remote import reconcile_schedules

    schedules_file = load_schedules(file)
    cfg = _config(config, profile)
    where = cluster_project(project)
    rev = schedules_file.rule.pinned_revision or LATEST_REVISION
    schedules = schedules_file.expand(_machine_types(None, where, cfg, rev), only=machine_type)
    for name in schedules.unused_overrides:
        typer.echo(f"note: the override for {name!r} is unused: no such machine type in the data at {rev}")
    built = _build("training", cfg, gpu=gpu)
    base = {"project": where, "config_overrides": encode_overrides(user_overrides(config))}
    with tempfile.TemporaryDirectory(prefix="asdflow-schedule-") as tmp:
        package = _compile_to(built, Path(tmp) / f"{built.name}.yaml")
        plan = reconcile_schedules(host, package, schedules, base, experiment=experiment,
                                   service_account=cfg.cluster.service_account, apply=apply,
                                   namespace=namespace, token=token)
    typer.echo(plan.to_table())
    changes = len(plan.changes)
    if apply:
        typer.echo(f"applied {changes} change(s)" if changes else "nothing to change")
    else:
        typer.echo(f"{changes} change(s) planned; run again with --apply to carry them out" if changes
                   else "nothing to change")
