"""`asdflow data version`: the data revision the pipeline will use, and the data's hash.

Mounted by `asdflow.cli` as `data_app.command("version")(data_version)`; a DataError
(no DVC repo, no data.dvc) reaches the CLI's one-line error handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def data_version(
    project: Annotated[Path, typer.Argument(help="Project folder holding .dvc/ and data.dvc.")] = Path("."),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (its `data` section).")] = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="tiny | demo | full")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the version as JSON.")] = False,
) -> None:
    """Print the data revision (git commit of data.dvc, or 'workspace') and the data's md5."""
    from asdflow.config import load_config
    from asdflow.data.versioning import current_data_version

    version = current_data_version(project, load_config(config, profile).data)
    if as_json:
        typer.echo(version.model_dump_json())
        return
    typer.echo(f"revision: {version.rev}")
    typer.echo(f"md5: {version.md5}")
    typer.echo(f"data: {version.path}/ ({version.n_files} files, {version.size / 1e6:.1f} MB)")
    typer.echo(f"remote: {version.remote} ({version.remote_url})")
    if not version.committed:
        typer.echo(f"note: {version.path}.dvc is not committed; the pipeline would copy the workspace data")
