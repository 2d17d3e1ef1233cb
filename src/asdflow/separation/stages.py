"""The separation stages as the pipeline (and the CLI) runs them, one call per KFP component.

- `separation_train_stage`: train on the machine type's supplemental clips minus a held-out
  part, score SI-SNRi on held-out mixtures (beside the Wiener baseline), register `sep-<mt>`;
- `denoise_stage`: the machine stream of the machine type's train and test clips, in the same
  layout and names, with a manifest.csv of the separated clips beside them (labels, domains,
  attributes and flags copied from the input manifest), so later stages read it like any dataset.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from asdflow.config import AsdflowConfig, SeparationConfig
from asdflow.data.manifest import ClipRecord, Manifest, ManifestProblem
from asdflow.errors import DataError

STAGE_FILE = "separation_stage.json"
SKIPPED_FILE = "separation_skipped.json"  # in the separator folder when there was nothing to train on


def skipped_reason(separator_dir: str | Path) -> str | None:
    """Why the separation stage was skipped, when its separator folder says so; None when it trained."""
    marker = Path(separator_dir) / SKIPPED_FILE
    return json.loads(marker.read_text())["reason"] if marker.is_file() else None


def missing_supplemental(manifest: Manifest, machine_type: str) -> str | None:
    """Why the machine type has nothing to train a separator on (no supplemental clip at all), else None.

    DCASE 2023 and a plant's own data have no `supplemental/` folder: the stage is skipped, not
    failed. One kind present without the other is a broken dataset and still fails in training."""
    if any(r.machine_type == machine_type and r.split == "supplemental" for r in manifest.records):
        return None
    return (f"no supplemental clips of {machine_type} in {manifest.root} (DCASE layout "
            f"{machine_type}/supplemental/): separation skipped, the detector reads the original clips")

def split_supplemental(manifest: Manifest, machine_type: str, fraction: float) -> tuple[Manifest, Manifest | None]:
    """(training part, held-out part) of the machine type's supplemental clips.

    Per kind (clean, noise), the last `fraction` of the clips by name is held out, at least one,
    and only while one stays for training: a kind with a single clip is not held out, and then
    there is no held-out part (None): the evaluation falls back to fresh mixtures of the
    training clips and says so (`held_out=False`).
    """
    supplemental = [r for r in manifest.records if r.machine_type == machine_type and r.split == "supplemental"]
    train: list[ClipRecord] = []
    held: list[ClipRecord] = []
    complete = True
    for kind in ("clean", "noise"):
        clips = sorted((r for r in supplemental if r.supplemental_kind == kind), key=lambda r: r.name)
        n_held = max(1, int(round(len(clips) * fraction))) if fraction > 0 and len(clips) >= 2 else 0
        n_held = min(n_held, len(clips) - 1) if clips else 0
        complete &= n_held > 0
        train += clips[: len(clips) - n_held]
        held += clips[len(clips) - n_held :]
    others = [r for r in manifest.records if not (r.machine_type == machine_type and r.split == "supplemental")]
    if not complete:
        return Manifest(root=manifest.root, records=others + train + held, problems=list(manifest.problems)), None
    return (Manifest(root=manifest.root, records=others + train, problems=list(manifest.problems)),
            Manifest(root=manifest.root, records=held))


class SeparatorEvaluation(BaseModel):
    machine_type: str
    held_out: bool  # False: mixtures of the training clips (too few clips to hold any out)
    n_clean: int
    n_noise: int
    scores: dict  # SeparationScores as a dict

    @property
    def si_snri_db(self) -> float:
        return float(self.scores["separator_si_snri_db"])


def evaluate_separator(
    separator_dir: str | Path,
    manifest: Manifest,
    machine_type: str,
    config: SeparationConfig,
    held_out: bool = True,
) -> SeparatorEvaluation:
    """SI-SNRi of the separator and of the Wiener baseline on `config.eval_mixtures` mixtures per SNR of
    `config.eval_snr_db`, made from the manifest's supplemental clips of the machine type."""
    from asdflow.separation.denoise import separate_waveform
    from asdflow.separation.evaluation import SeparationScores, make_eval_mixtures, score_mixtures
    from asdflow.separation.mixtures import load_mixture_source
    from asdflow.separation.model import load_separator

    source = load_mixture_source(manifest, config, [machine_type])
    model, info = load_separator(separator_dir)
    rate = int(info["config"]["sample_rate"])
    mixtures = make_eval_mixtures(source.clean[machine_type], source.noise[machine_type], config.eval_snr_db,
                                  config.eval_mixtures, source.segment_length, seed=config.seed + 1)
    chunk = float(info["config"]["chunk_seconds"])
    scores: SeparationScores = score_mixtures(mixtures, lambda x: separate_waveform(model, x, rate, chunk))
    return SeparatorEvaluation(machine_type=machine_type, held_out=held_out, n_clean=len(source.clean[machine_type]),
                               n_noise=len(source.noise[machine_type]), scores=scores.model_dump())


class SeparationStageResult(BaseModel):
    machine_type: str
    separator_dir: str
    version: str | None = None  # the weights' sha256 (None: skipped)
    steps: int = 0
    final_loss: float | None = None
    steps_per_second: float = 0.0
    evaluation: SeparatorEvaluation | None = None
    skipped_reason: str | None = None  # the stage had no input (no supplemental clips)
    registered_version: str | None = None  # of sep-<machine_type> in MLflow
    skipped: list[ManifestProblem] = []


def separation_train_stage(
    manifest: Manifest,
    machine_type: str,
    config: AsdflowConfig,
    separator_dir: str | Path,
    work_dir: str | Path | None = None,
    register: bool = True,
    project_dir: str | Path | None = None,
) -> SeparationStageResult:
    """Train the machine type's separator, evaluate it on held-out mixtures, register it as `sep-<mt>`.

    `separator_dir` receives separator.json + separator.pt (+ separation_stage.json, the figures).
    Checkpoints go to `work_dir` (a re-run with the same work_dir resumes), a temporary folder by default.
    """
    from asdflow.separation.train import train_separator

    reason = missing_supplemental(manifest, machine_type)
    if reason is not None:
        return _skip_separation(machine_type, reason, config, separator_dir, register, project_dir)
    sep = config.separation
    train_part, held = split_supplemental(manifest, machine_type, sep.eval_fraction)
    out = Path(separator_dir)
    with tempfile.TemporaryDirectory(prefix="asdflow-separator-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        trained = train_separator(train_part, sep, work, progress=config.progress, machine_types=[machine_type])
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(trained.separator_dir, out)
    evaluation = evaluate_separator(out, held if held is not None else train_part, machine_type, sep,
                                    held_out=held is not None)
    losses = trained.losses
    metrics = {
        **_scores_metrics(evaluation),
        "steps": float(trained.steps),
        "final_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
        "steps_per_second": trained.steps_per_second,
    }
    registered = None
    if register:
        from asdflow.registry.separators import register_separator

        registered = register_separator(out, machine_type, config, metrics, project_dir=project_dir,
                                        tags={"held_out_evaluation": str(evaluation.held_out).lower()}).version
    result = SeparationStageResult(
        machine_type=machine_type, separator_dir=str(out), version=trained.version, steps=trained.steps,
        final_loss=trained.final_loss, steps_per_second=trained.steps_per_second, evaluation=evaluation,
        registered_version=registered, skipped=trained.skipped,
    )
    (out / STAGE_FILE).write_text(json.dumps(result.model_dump(), indent=2, default=str))
    return result


def _skip_separation(machine_type: str, reason: str, config: AsdflowConfig, separator_dir: str | Path,
                     register: bool, project_dir: str | Path | None) -> SeparationStageResult:
    """The stage without input: a marker in the separator folder (denoise passes the clips on as they
    are) and, when registering, a run in MLflow that says why."""
    out = Path(separator_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = SeparationStageResult(machine_type=machine_type, separator_dir=str(out), skipped_reason=reason)
    (out / SKIPPED_FILE).write_text(json.dumps({"machine_type": machine_type, "reason": reason}, indent=2))
    if register:
        from asdflow.registry.separators import log_skipped_separation

        log_skipped_separation(machine_type, reason, config, project_dir=project_dir)
    (out / STAGE_FILE).write_text(json.dumps(result.model_dump(), indent=2, default=str))
    return result


def _scores_metrics(evaluation: SeparatorEvaluation) -> dict[str, float]:
    from asdflow.separation.evaluation import SeparationScores

    return SeparationScores(**evaluation.scores).metrics()


def separated_manifest(manifest: Manifest, separated_root: str | Path, written: list[Path]) -> Manifest:
    """The input manifest's records of the written clips, their paths moved under `separated_root`."""
    from asdflow.data.audio import md5_of

    root, out = Path(manifest.root).resolve(), Path(separated_root).resolve()
    done = {p.resolve() for p in written}
    records = []
    for record in manifest.records:
        target = out / Path(record.path).resolve().relative_to(root)
        if target in done:
            records.append(record.model_copy(update={"path": str(target), "md5": md5_of(target)}))
    return Manifest(root=str(out), records=records)


class DenoiseResult(BaseModel):
    machine_type: str
    out_dir: str
    n_written: int
    problems: list[ManifestProblem]
    realtime_factor: float
    skipped_reason: str | None = None  # separation was skipped: the clips are passed on as they are


def _pass_through(chosen: Manifest, machine_type: str, out_dir: str | Path, reason: str) -> DenoiseResult:
    """The original train and test clips in the separated dataset's place (linked where the file system
    allows, else copied), so the later stages read them as they would read separated ones."""
    import os

    root, out = Path(chosen.root).resolve(), Path(out_dir).resolve()
    records = [r for r in chosen.records if r.split in ("train", "test")]
    written = []
    for record in records:
        target = out / Path(record.path).resolve().relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(record.path, target)
        except OSError:
            shutil.copyfile(record.path, target)
        written.append(target)
    separated = separated_manifest(Manifest(root=chosen.root, records=records), out, written)
    separated.save(out)
    (out / SKIPPED_FILE).write_text(json.dumps({"machine_type": machine_type, "reason": reason}, indent=2))
    return DenoiseResult(machine_type=machine_type, out_dir=str(out), n_written=len(written), problems=[],
                         realtime_factor=0.0, skipped_reason=reason)


def denoise_stage(
    separator_dir: str | Path,
    manifest: Manifest,
    machine_type: str,
    out_dir: str | Path,
    progress: bool = True,
    lineage_from: str | Path | None = None,
) -> DenoiseResult:
    """Separate the machine type's train and test clips of `manifest` into `out_dir` and save the
    separated clips' manifest.csv there (unreadable clips: listed in its problems, the rest written).
    `lineage_from`: a folder holding the fetch step's lineage record (the validated manifest's), carried along."""
    result = _denoise(separator_dir, manifest, machine_type, out_dir, progress)
    if lineage_from is not None:
        from asdflow.data.versioning import carry_lineage

        carry_lineage(lineage_from, result.out_dir)
    return result


def _denoise(separator_dir: str | Path, manifest: Manifest, machine_type: str, out_dir: str | Path,
             progress: bool) -> DenoiseResult:
    from asdflow.separation.denoise import separate_dataset

    chosen = manifest.select(machine_type=machine_type)
    if not [r for r in chosen.records if r.split in ("train", "test")]:
        raise DataError(f"no train or test clips of machine type {machine_type!r} in {manifest.root} to denoise")
    reason = skipped_reason(separator_dir)
    if reason is not None:
        return _pass_through(chosen, machine_type, out_dir, reason)
    run = separate_dataset(separator_dir, chosen, out_dir, progress=progress)
    separated = separated_manifest(chosen, run.out_root, run.written)
    separated.problems = list(run.problems)
    separated.save(run.out_root)
    return DenoiseResult(machine_type=machine_type, out_dir=str(run.out_root), n_written=len(run.written),
                         problems=run.problems, realtime_factor=run.realtime_factor)
