"""`asdflow prompts`: a thin shell over `asdflow.prompts.write_prompt_table`.

Mounted by asdflow.cli (`app.command("prompts")(prompts)`); an AsdflowError
reaches the CLI's one-line error handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def prompts(
    data: Annotated[Path, typer.Option("--data", "-d", help="DCASE-layout dataset root.")],
    machine_type: Annotated[str, typer.Option("--machine-type", "-m", help="The machine type to describe.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for prompts.csv and prompts_summary.json.")],
    strategies: Annotated[list[str] | None, typer.Option(
        "--strategies", "-s",
        help="template, spectral, metadata, clap_ranked (comma-separated or repeated; default: the config's).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (its `prompts` section).")] = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="tiny | demo | full")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Write the prompt table of one machine type's normal clips (one row per clip and strategy)."""
    from asdflow.config import load_config
    from asdflow.prompts import write_prompt_table

    cfg = load_config(config, profile, {"progress": False} if quiet else None)
    run = write_prompt_table(out, machine_type, cfg, data_dir=data, strategies=strategies or None)
    typer.echo(run.describe())
