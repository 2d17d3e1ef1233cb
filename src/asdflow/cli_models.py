"""`asdflow models list|compare|promote|rollback`: the registry, per machine type.

Each command is a thin shell over one function of `asdflow.registry.models`;
mlflow is imported only when a command runs, so `asdflow --help` stays fast.
Errors are raised as AsdflowError for `asdflow.cli.main` to print as one line.
Mounted by `asdflow.cli` as `app.add_typer(models_app, name="models")`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from asdflow.errors import AsdflowError, one_line

T = TypeVar("T")

models_app = typer.Typer(
    help="The MLflow model registry: asd-<machine_type> versions, @champion and @challenger.",
    no_args_is_help=True,
)

MachineType = Annotated[str, typer.Argument(help="machine type, e.g. fan (model asd-<machine_type>)")]
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="tiny | demo | full")]
ProjectOption = Annotated[
    Path | None,
    typer.Option("--project-dir", help="relative tracking paths resolve against it (default: the current folder)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _call(action: Callable[[], T]) -> T:
    """Run a library call; MLflow's own errors (store unreachable...) become a one-line RegistryError.

    Nothing is printed here: `asdflow.cli.main` prints every AsdflowError as `asdflow: error: ...`
    (exit code 2), the same for these commands as for the rest of the CLI."""
    try:
        return action()
    except AsdflowError:
        raise
    except Exception as err:
        if type(err).__module__.startswith("mlflow"):
            from asdflow.registry.models import RegistryError

            raise RegistryError(f"MLflow: {one_line(err)}") from None
        raise


def _config(config: Path | None, profile: str | None):
    from asdflow.config import load_config

    return _call(lambda: load_config(config, profile=profile))


@models_app.command("list")
def list_command(
    machine_type: MachineType,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    project_dir: ProjectOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every registered version of asd-<machine_type>, newest first, with aliases and scores."""
    from asdflow.registry.models import list_models

    cfg = _config(config, profile)
    versions = _call(lambda: list_models(machine_type, cfg, project_dir))
    if as_json:
        typer.echo(json.dumps([v.model_dump() for v in versions], indent=2))
        return
    if not versions:
        typer.echo(f"no registered versions of {machine_type} yet")
        return
    header = ["version", "aliases", "official", "AUC src", "AUC tgt", "pAUC", "family", "gate", "created"]
    rows = [
        [v.version, ",".join(v.aliases) or "-", *(_num(v.metric(k)) for k in ("official", "auc_source", "auc_target", "pauc")),
         v.tags.get("detector_family", "-"), v.tags.get("gate_verdict", "-"), v.created or "-"]
        for v in versions
    ]
    typer.echo(_table(header, rows))


@models_app.command("compare")
def compare_command(
    machine_type: MachineType,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    project_dir: ProjectOption = None,
    as_json: JsonOption = False,
) -> None:
    """@champion beside @challenger (scores recorded at registration, the gate's verdict)."""
    from asdflow.registry.models import compare

    cfg = _config(config, profile)
    comparison = _call(lambda: compare(machine_type, cfg, project_dir))
    typer.echo(comparison.model_dump_json(indent=2) if as_json else comparison.to_table())


@models_app.command("promote")
def promote_command(
    machine_type: MachineType,
    version: Annotated[str, typer.Argument(help="the version to make @champion")],
    expect_champion: Annotated[
        str | None,
        typer.Option("--expect-champion", help="refuse unless @champion is this version now ('none': no champion)"),
    ] = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    project_dir: ProjectOption = None,
) -> None:
    """Point @champion at VERSION (recording the version it replaces, for rollback)."""
    from asdflow.registry.models import current_aliases, promote

    cfg = _config(config, profile)

    def run():
        # without --expect-champion the user means "whatever is champion now"
        expected = expect_champion if expect_champion is not None else current_aliases(
            machine_type, cfg, project_dir)["champion"]
        return promote(machine_type, version, expected, cfg, project_dir, reason="asdflow models promote")

    result = _call(run)
    if result.action == "unchanged":
        typer.echo(f"{result.name}: version {result.version} already is @champion")
    else:
        was = f"version {result.previous_champion}" if result.previous_champion else "no champion"
        typer.echo(f"{result.name}: @champion -> version {result.version} (was {was})")


@models_app.command("rollback")
def rollback_command(
    machine_type: MachineType,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    project_dir: ProjectOption = None,
) -> None:
    """Move @champion back to the version it replaced."""
    from asdflow.registry.models import rollback

    cfg = _config(config, profile)
    result = _call(lambda: rollback(machine_type, cfg, project_dir))
    typer.echo(f"{result.name}: @champion -> version {result.version} (rolled back from version {result.previous_champion})")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])
