"""`asdflow simulate`: simulated anomalous spectrograms of one machine type (+ PNGs with --plot).

Mounted by asdflow.cli (`app.command("simulate")(simulate)`); an AsdflowError reaches the
CLI's one-line error handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def simulate(
    data: Annotated[Path, typer.Option("--data", help="DCASE-layout dataset root (normal train clips are used).")],
    machine_type: Annotated[str, typer.Option("--machine-type", "-m", help="Machine type to simulate anomalies of.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (npy spectrograms, masks, metadata.json).")],
    n: Annotated[int | None, typer.Option("--n", help="Number of simulated patches (default: the config's).")] = None,
    method: Annotated[str | None, typer.Option("--method", help="Simulation method, e.g. latent | codebook.")] = None,
    plot: Annotated[bool, typer.Option("--plot", help="Also write plots/NNNN.png: normal vs simulated + mask.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: the config's simulation.seed).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (its `simulation` section).")] = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="tiny | demo | full")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train the simulator on the machine type's normal clips and write simulated anomalies."""
    from asdflow.config import load_config
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.simulation.simulate import simulate_anomalies

    overrides: dict = {"simulation": {"seed": seed}} if seed is not None else {}
    if quiet:
        overrides["progress"] = False
    cfg = load_config(config, profile, overrides)
    manifest = build_manifest(data, machine_types=[machine_type], compute_md5=False, progress=cfg.progress)
    folder = simulate_anomalies(manifest, machine_type, cfg, out, n=n, method=method)
    typer.echo(f"simulated anomalies of {machine_type} in {folder}")
    if plot:
        from asdflow.simulation.plots import plot_simulation_folder

        paths = plot_simulation_folder(folder, limit=None)
        typer.echo(f"wrote {len(paths)} plots to {folder / 'plots'}")
