"""`asdflow separation train` and `asdflow separate`: thin shells over the separation library.

Mounted by asdflow.cli (the lead adds the lines); an AsdflowError reaches the CLI's
one-line error handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (its `separation` section).")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="tiny | demo | full")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def separate_train(
    data: Annotated[Path, typer.Argument(help="DCASE-layout dataset root with <machine>/supplemental/ clean and noise clips.")],
    out: Annotated[Path, typer.Argument(help="Output folder: checkpoints/ and separator/ (re-running resumes).")],
    machine_type: Annotated[list[str] | None, typer.Option("--machine-type", "-m", help="Machine type(s); default: all.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Training steps (overrides the config).")] = None,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the Conv-TasNet separator on mixtures of the supplemental clips; resumes from out/checkpoints."""
    from asdflow.config import load_config
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.separation.train import train_separator

    overrides = {"separation": {"steps": steps}} if steps is not None else None
    cfg = load_config(config, profile, overrides)
    show = cfg.progress and not quiet
    manifest = build_manifest(data, machine_types=machine_type or None, compute_md5=False, progress=show)
    result = train_separator(manifest, cfg.separation, out, progress=show, machine_types=machine_type or None)
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    loss = f"{result.final_loss:.3f}" if result.final_loss is not None else "n/a"
    typer.echo(f"separator: {result.separator_dir} version {result.version[:12]} steps {result.steps}{resumed} "
               f"final loss {loss} ({result.steps_per_second:.2f} steps/s)")
    for problem in result.skipped:
        typer.echo(f"skipped: {problem.path}: {problem.reason}")


def separate(
    data: Annotated[Path, typer.Argument(help="DCASE-layout dataset root to denoise.")],
    separator: Annotated[Path, typer.Argument(help="Separator folder (separator.json + separator.pt).")],
    out: Annotated[Path, typer.Argument(help="Output root: the machine stream in the same layout and names.")],
    chunk_seconds: Annotated[float | None, typer.Option("--chunk-seconds", help="Chunk length (default: the separator's).")] = None,
    overlap: Annotated[float | None, typer.Option("--overlap", help="Overlap fraction between chunks (default: the separator's).")] = None,
    machine_type: Annotated[list[str] | None, typer.Option("--machine-type", "-m", help="Machine type(s); default: all.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Denoise a dataset with a trained separator; writes separation_manifest.json beside the clips."""
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.separation.denoise import separate_dataset

    manifest = build_manifest(data, machine_types=machine_type or None, compute_md5=True, progress=not quiet)
    run = separate_dataset(separator, manifest, out, chunk_seconds=chunk_seconds, overlap=overlap, progress=not quiet)
    typer.echo(f"separated {len(run.written)} clips into {run.out_root} ({run.realtime_factor:.1f}x real time)")
    for problem in run.problems:
        typer.echo(f"not separated: {problem.path}: {problem.reason}")
