"""The `asdflow` command line: each command parses its options and calls one library function.

Errors meant for the user (AsdflowError) print as one line, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import click
import typer

from asdflow.cli_data_version import data_version
from asdflow.cli_models import models_app
from asdflow.cli_pipeline import pipeline_app
from asdflow.cli_prompts import prompts
from asdflow.cli_separate import separate, separate_train
from asdflow.cli_serve import serve
from asdflow.cli_simulate import simulate
from asdflow.cli_synthesis import synthesis_app
from asdflow.config import AsdflowConfig, load_config
from asdflow.errors import AsdflowError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Unsupervised anomalous sound detection for machine condition monitoring.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthesize, read, validate, download.")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
data_app.command("version")(data_version)
app.add_typer(pipeline_app, name="pipeline")
app.command("serve")(serve)
separation_app = typer.Typer(no_args_is_help=True, help="Separation: train the Conv-TasNet separator.")
app.add_typer(separation_app, name="separation")
separation_app.command("train")(separate_train)
app.command("separate")(separate)
app.command("prompts")(prompts)
app.command("simulate")(simulate)
app.add_typer(synthesis_app, name="synthesis")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (validated); merged over the profile.")
ProfileOpt = typer.Option(None, "--profile", "-p", help="tiny | demo | full (default: the config's, else demo).")
MachineOpt = typer.Option(None, "--machine-type", "-m", help="Machine type(s); default: every one in the data.")


def _config(config: Optional[Path], profile: Optional[str], quiet: bool = False, **overrides) -> AsdflowConfig:
    extra = {k: v for k, v in overrides.items() if v is not None}
    if quiet:
        extra["progress"] = False
    return load_config(config, profile, extra)


def _say(text: str) -> None:
    typer.echo(text)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Folder to write the DCASE-layout dataset into."),
    config: Optional[Path] = ConfigOpt,
    profile: Optional[str] = ProfileOpt,
    machine_type: Optional[list[str]] = MachineOpt,
    seed: Optional[int] = typer.Option(None, help="Generator seed (default: the config's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Write a synthetic DCASE-layout dataset (normal, anomalous, supplemental clips)."""
    from asdflow.data.synth import synthesize_dataset

    cfg = _config(config, profile, quiet)
    synth = cfg.synth
    if machine_type:
        synth = synth.model_copy(update={"machine_types": list(machine_type)})
    if seed is not None:
        synth = synth.model_copy(update={"seed": seed})
    summary = synthesize_dataset(synth, out, progress=cfg.progress)
    _say(f"wrote a synthetic dataset to {out}: {summary.model_dump_json()}")


@data_app.command("manifest")
def data_manifest(
    root: Path = typer.Argument(..., help="DCASE-layout dataset root (folders per machine type)."),
    out: Optional[Path] = typer.Option(None, help="Where to write manifest.csv (default: the root)."),
    machine_type: Optional[list[str]] = MachineOpt,
    md5: bool = typer.Option(True, help="Compute each file's md5."),
    headers: bool = typer.Option(True, help="Read each file's header (rate, channels, duration)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Build the typed manifest of a dataset; list every file it could not parse or read."""
    from asdflow.data.dcase_reader import build_manifest, summarize_manifest, write_manifest_report

    manifest = build_manifest(root, machine_type or None, read_headers=headers, compute_md5=md5, progress=not quiet)
    target = out or root
    manifest.save(target)
    write_manifest_report(manifest, target)
    summary = summarize_manifest(manifest)
    _say(f"{len(manifest)} clips, {len(manifest.problems)} problem(s); manifest in {Path(target) / 'manifest.csv'}")
    for key, value in summary.items():
        if key != "problems":
            _say(f"  {key}: {value}")
    for problem in manifest.problems:
        _say(f"  problem: {problem.path}: {problem.reason}")


@data_app.command("fetch-dcase")
def data_fetch_dcase(
    dest: Path = typer.Argument(..., help="Folder to download and unzip the development set into."),
    url: Optional[str] = typer.Option(None, help="Base URL of the files (default: the Zenodo record)."),
    api_url: Optional[str] = typer.Option(None, help="Record API URL giving the md5 checksums."),
    machine_type: Optional[list[str]] = MachineOpt,
    allow_unverified: bool = typer.Option(False, help="Accept files with no published checksum."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Download the DCASE 2025 Task 2 development set (checksums, resume, unzip)."""
    from asdflow.data.fetch import DcaseDownloadSpec, fetch_dcase

    spec = DcaseDownloadSpec(allow_unverified=allow_unverified).with_urls(url, api_url)
    report = fetch_dcase(dest, spec, progress=not quiet, machine_types=machine_type or None)
    for item in report.files:
        _say(f"  {item.file}: {item.status}")
    _say(f"dataset in {dest}: machine types {', '.join(report.machine_types)}")


@data_app.command("validate")
def data_validate(
    data: Path = typer.Argument(..., help="Dataset folder or manifest.csv."),
    out: Path = typer.Option(Path("validation"), help="Folder for validation.json / .html."),
    quarantine: Optional[bool] = typer.Option(None, help="Leave bad clips out and go on (default: config)."),
    config: Optional[Path] = ConfigOpt,
    profile: Optional[str] = ProfileOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Check the dataset with Great Expectations; name every failing clip and expectation."""
    from asdflow.jobs import load_dataset
    from asdflow.validation import raise_on_failure, validate_dataset

    cfg = _config(config, profile, quiet)
    result = validate_dataset(load_dataset(data, cfg.progress), cfg.validation, out, quarantine, cfg.progress)
    raise_on_failure(result)
    left_out = f", {len(result.quarantined)} quarantined" if result.quarantined else ""
    _say(f"validation passed: {result.n_kept} of {result.n_clips} clips kept{left_out}; report {result.report_html}")


@app.command("train")
def train(
    data: Path = typer.Argument(..., help="Dataset folder or manifest.csv."),
    out: Path = typer.Option(Path("runs/detectors"), help="One detector folder per machine type is written here."),
    machine_type: Optional[list[str]] = MachineOpt,
    config: Optional[Path] = ConfigOpt,
    profile: Optional[str] = ProfileOpt,
    seed: Optional[int] = typer.Option(None),
    extra_train: Optional[list[Path]] = typer.Option(
        None, "--extra-train", help="Extra DCASE-layout folder (separated clips, synthetic normals) whose normal "
        "train clips join training; repeat for several."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train the configured detector family on each machine type's normal training clips."""
    from asdflow.detectors.selection import format_table as format_selection
    from asdflow.jobs import load_dataset, train_detector

    cfg = _config(config, profile, quiet, seed=seed)
    manifest = load_dataset(data, cfg.progress)
    for machine in machine_type or manifest.machine_types():
        result = train_detector(manifest, machine, cfg, out / machine, extra_train=extra_train or None)
        extra = f" ({result.n_extra_clips} from --extra-train)" if result.n_extra_clips else ""
        _say(f"{machine}: {result.family} trained on {result.fit_info.get('n_clips')} clips{extra}, "
             f"threshold {result.threshold:.4g}, saved to {result.detector_dir}")
        for key in ("selection", "time_pooling"):  # the label-free choice and its proxy table, best first
            if isinstance(result.fit_info.get(key), dict):
                for line in format_selection(result.fit_info[key], limit=8):
                    _say(f"  {line}")


@app.command("score")
def score(
    data: Path = typer.Argument(..., help="Dataset folder or manifest.csv."),
    detectors: Path = typer.Option(Path("runs/detectors"), help="Folder of detector folders (per machine type)."),
    out: Path = typer.Option(Path("runs/scores"), help="scores.csv and DCASE submission files per machine type."),
    machine_type: Optional[list[str]] = MachineOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Score every test clip; write scores.csv and the DCASE submission CSVs."""
    from asdflow.jobs import load_dataset, score_clips

    manifest = load_dataset(data, not quiet)
    for machine in machine_type or manifest.machine_types():
        result = score_clips(detectors / machine, manifest, machine, out / machine, progress=not quiet)
        _say(f"{machine}: scored {result.n_clips} clips -> {result.scores_csv}")


@app.command("evaluate")
def evaluate(
    data: Path = typer.Argument(..., help="Dataset folder or manifest.csv (the ground truth)."),
    scores: Path = typer.Option(Path("runs/scores"), help="Folder of per-machine-type scores (from `score`)."),
    out: Path = typer.Option(Path("runs/evaluation"), help="evaluation.json, ROC and histogram plots."),
    machine_type: Optional[list[str]] = MachineOpt,
):
    """The DCASE official score (AUC source/target, pAUC, harmonic mean) per machine type and section."""
    import pandas as pd

    from asdflow.jobs import evaluate_clips, load_dataset, read_scores

    manifest = load_dataset(data, False)
    found = [p.name for p in sorted(scores.iterdir()) if (p / "scores.csv").exists()] if scores.is_dir() else []
    machines = machine_type or found
    if not machines:
        raise AsdflowError(f"no scores.csv under {scores}: run `asdflow score` first")
    frame = pd.concat([read_scores(scores / m) for m in machines])
    report = evaluate_clips(frame, manifest, out)
    if report.not_evaluated:
        _say(f"{report.not_evaluated}; details in {out}")
        return
    _say(report.to_table())
    if report.partial:
        _say(report.partial)
    unlabelled = f" ({report.n_unlabelled} unlabelled test clip(s) scored, not evaluated)" if report.n_unlabelled else ""
    _say(f"official score {report.official:.4f}{unlabelled}; details in {out}")


@app.command("demo")
def demo(
    project: Path = typer.Option(Path("."), help="The project folder: data/, data.dvc, runs/ and mlruns/ live here."),
    config: Optional[Path] = ConfigOpt,
    profile: Optional[str] = ProfileOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """The main job on this machine: synthesize, version (DVC), run the KFP pipeline locally, gate and
    promote in MLflow, serve the champions with BentoML and score clips over HTTP."""
    from asdflow.demo import run_demo

    run_demo(project, _config(config, profile, quiet))


def main() -> None:
    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    except AsdflowError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        typer.echo(f"asdflow: error: {lines[0] if lines else type(err).__name__}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:  # an unexpected failure still ends in one line; the trace on request
        if os.environ.get("ASDFLOW_DEBUG"):
            raise
        typer.echo(f"asdflow: unexpected {type(err).__name__}: {err} (set ASDFLOW_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
