"""`asdflow synthesis finetune|generate`: thin shells over asdflow.synthesis.stages.

Mounted by asdflow.cli (`app.add_typer(synthesis_app, name="synthesis")`); an
AsdflowError reaches the CLI's one-line error handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

synthesis_app = typer.Typer(no_args_is_help=True,
                            help="Synthesis: fine-tune Tango on normal clips, generate synthetic normals.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (its `synthesis` section).")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="tiny | demo | full")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
MachineOpt = Annotated[list[str] | None, typer.Option("--machine-type", "-m", help="Machine type(s); default: all.")]
PromptsOpt = Annotated[Path | None, typer.Option(
    "--prompts", help="Prompt table (prompts.csv or its folder, from `asdflow prompts`); default: built now.")]


def _config(config: Path | None, profile: str | None, quiet: bool, synthesis: dict):
    from asdflow.config import load_config

    overrides: dict = {"synthesis": {k: v for k, v in synthesis.items() if v is not None}}
    if quiet:
        overrides["progress"] = False
    return load_config(config, profile, overrides)


def _machines(data: Path, machine_type: list[str] | None, progress: bool):
    from asdflow.jobs import load_dataset

    manifest = load_dataset(data, progress)
    return manifest, machine_type or manifest.machine_types()


def _prompts_for(prompts: Path | None, machine: str, several: bool) -> Path | None:
    """A folder of per-machine folders (<prompts>/<machine>/prompts.csv) or one table."""
    if prompts is not None and several and (prompts / machine).is_dir():
        return prompts / machine
    return prompts


@synthesis_app.command("finetune")
def finetune(
    data: Annotated[Path, typer.Argument(help="DCASE-layout dataset or manifest.csv (normal training clips).")],
    out: Annotated[Path, typer.Argument(help="Output folder: <out>/<machine>/model and checkpoints (re-running resumes).")],
    machine_type: MachineOpt = None,
    prompts: PromptsOpt = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="Prompt strategy to train with.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Training steps (overrides the config).")] = None,
    register: Annotated[bool | None, typer.Option("--register/--no-register", help="Register tango-<machine> in MLflow.")] = None,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune Tango (LoRA text encoder + LoRA VAE + full UNet) on each machine type's normal clips."""
    from asdflow.synthesis.stages import finetune_stage

    cfg = _config(config, profile, quiet, {"steps": steps, "prompt_strategy": strategy})
    manifest, machines = _machines(data, machine_type, cfg.progress)
    for machine in machines:
        stage = finetune_stage(manifest, machine, cfg, out / machine, _prompts_for(prompts, machine, len(machines) > 1),
                               register=register)
        r = stage.finetune
        resumed = f" (resumed from step {r.resumed_from})" if r.resumed_from is not None else ""
        loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "n/a"
        registered = f"; registered {stage.registered_name} v{stage.registered_version}" if stage.registered_name else ""
        typer.echo(f"{machine}: Tango fine-tuned on {r.n_clips} clips ({r.strategy} prompts), {r.steps} steps{resumed}, "
                   f"final loss {loss}, {r.steps_per_second:.2f} steps/s -> {r.model_dir} version {r.version}{registered}")


@synthesis_app.command("generate")
def generate(
    models: Annotated[Path, typer.Argument(help="Fine-tuning output (<models>/<machine>/model) or one model folder.")],
    data: Annotated[Path, typer.Argument(help="The real dataset (sections, domains, level, quality reference).")],
    out: Annotated[Path, typer.Argument(help="Output root: DCASE layout <out>/<machine>/train/*.wav + metadata.csv.")],
    machine_type: MachineOpt = None,
    prompts: PromptsOpt = None,
    clips: Annotated[int | None, typer.Option("--clips", help="Clips per machine type and strategy.")] = None,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Generate synthetic normal training clips per machine type and prompt strategy; check their quality."""
    from asdflow.synthesis.finetune import MODEL_DIR, MODEL_JSON
    from asdflow.synthesis.stages import generate_stage

    cfg = _config(config, profile, quiet, {"clips_per_strategy": clips})
    manifest, machines = _machines(data, machine_type, cfg.progress)
    for machine in machines:
        model_dir = models if (models / MODEL_JSON).is_file() else models / machine / MODEL_DIR
        stage = generate_stage(model_dir, manifest, machine, cfg, out,
                               _prompts_for(prompts, machine, len(machines) > 1))
        g = stage.generate
        typer.echo(f"{machine}: {len(g.clips)} synthetic normal clips in {Path(g.out_root) / machine / 'train'} "
                   f"({g.seconds_per_clip:.2f} s per clip); per strategy {g.per_strategy}")
        for strategy, why in g.skipped_strategies.items():
            typer.echo(f"  skipped {strategy}: {why}")
        if stage.quality is not None:
            q = stage.quality
            fad = f"{q.frechet_distance:.4g}" if q.frechet_distance is not None else "n/a"
            clap = f"{q.clap_similarity_mean:.3f}" if q.clap_similarity_mean is not None else "n/a"
            typer.echo(f"  quality: level {q.level_dbfs_mean:.1f} dBFS, clipped clips {q.n_clipped_clips}, "
                       f"exact duplicates {sum(len(x) - 1 for x in q.exact_duplicate_groups)}, near-duplicate pairs "
                       f"{len(q.near_duplicate_pairs)}, CLAP similarity {clap}, Frechet ({q.embedding}) {fad}")
        else:
            typer.echo(f"  quality checks did not run: {stage.quality_error}")
