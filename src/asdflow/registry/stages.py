"""Pipeline stages over the registry: one call per KFP component, artifact folders in.

A component hands over the folders earlier stages wrote; everything between
reading them and the registry (which clips, which scores, which report) is here,
so the component itself stays one line and the same stage runs outside KFP.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from asdflow.config import AsdflowConfig
from asdflow.data.manifest import Manifest
from asdflow.data.versioning import DataLineage, read_lineage
from asdflow.errors import DataError
from asdflow.registry.models import RegisteredDetector, register_detector
from asdflow.registry.tracking import log_training_run, manifest_digest

UNRESOLVED_REVISION = "latest"  # what the run records when neither a revision nor a lineage was handed over
FETCH_LINEAGE = "the fetch step's data lineage"


def register_stage(
    detector_dir: str | Path,
    manifest_dir: str | Path,
    scores_dir: str | Path,
    evaluation_dir: str | Path,
    machine_type: str,
    config: AsdflowConfig,
    *,
    data_version: str | None = None,
    data_lineage: DataLineage | str | None = None,
    separator_dir: str | Path | None = None,
    project_dir: str | Path | None = None,
    tags: Mapping[str, str] | None = None,
) -> RegisteredDetector:
    """Log one training run of `machine_type` (params, per-section metrics, plots, submission CSVs,
    git commit, data lineage) and register the detector in `detector_dir` into that run as
    `asd-<machine_type>@challenger`.

    `manifest_dir` is the validated manifest (its train clips of `machine_type` are the training
    data, its test clips the evaluation data), `scores_dir` the score stage's scores,
    `evaluation_dir` the evaluate stage's report.

    Which data: `data_lineage` (the fetch step's record, or its JSON), else the lineage file that
    travels with the manifest (validate and denoise carry it), else the one in the manifest's root folder. With one, the run's `data_version` tag is the
    commit fetched ("workspace" for the folder as it was) and `dvc_data_hash` data.dvc's hash at
    that commit; without, `data_version` is the revision as requested ("latest" when empty) and the
    hash a digest of the manifest, never the working copy's data.dvc (which may name other data).
    `data_revision_requested` keeps the revision as requested; `data_lineage` says which case it was.

    `separator_dir`: the separator the detector was trained behind (`separation.use: separated`);
    the registered model carries and applies it, so it scores raw clips as it was evaluated.
    A skipped separation stage (no supplemental clips) leaves nothing to carry.
    """
    from asdflow.evaluation.metrics import EvaluationReport
    from asdflow.jobs import EVALUATION_FILE, read_scores

    manifest = Manifest.load(manifest_dir)
    found_in = manifest_dir if read_lineage(manifest_dir) is not None else manifest.root
    lineage = lineage_of_fetch(data_lineage, found_in, data_version)
    clips = manifest.select(machine_type=machine_type)
    train = clips.select(split="train")
    data_hash, hash_source = data_hash_of(lineage, train)
    report = EvaluationReport.load(Path(evaluation_dir) / EVALUATION_FILE)
    scored = read_scores(scores_dir)
    run = log_training_run(
        machine_type, config, report=report, scores=dict(zip(scored["name"], scored["score"])),
        train_manifest=train, eval_manifest=clips.select(split="test"),
        detector_dir=detector_dir, project_dir=project_dir, data_hash=data_hash, data_hash_source=hash_source,
        tags={**lineage_tags(lineage, data_version), **dict(tags or {})},
    )
    from asdflow.separation.stages import skipped_reason

    if separator_dir is not None and skipped_reason(separator_dir) is not None:
        separator_dir = None
    return register_detector(detector_dir, machine_type, config, run_id=run.run_id, report=report,
                             project_dir=project_dir, separator_dir=separator_dir)


def lineage_of_fetch(
    given: DataLineage | str | None, manifest_root: str, data_version: str | None
) -> DataLineage | None:
    """The fetch step's lineage: handed over, else found in the manifest's root (the fetched folder).

    A lineage whose requested revision is not `data_version` belongs to another fetch than the one
    this run was given: refused rather than recorded under the wrong revision.
    """
    lineage, where = _handed_over(given), FETCH_LINEAGE
    if lineage is None and manifest_root:
        lineage, where = read_lineage(manifest_root), f"the lineage file in {manifest_root}"
    if lineage is not None and data_version and lineage.requested != data_version:
        raise DataError(
            f"register: data_version is {data_version!r} but {where} says the data was fetched "
            f"for {lineage.requested!r} (commit {lineage.commit})"
        )
    return lineage


def _handed_over(given: DataLineage | str | None) -> DataLineage | None:
    if isinstance(given, str):  # the fetch component's output, as KFP passes it: JSON, "" when not wired
        return DataLineage.from_json(given, FETCH_LINEAGE) if given.strip() else None
    return given


def data_hash_of(lineage: DataLineage | None, train_manifest: Manifest) -> tuple[str, str]:
    """(hash, source): data.dvc's hash as the fetch step read it, else a digest of the clips trained on."""
    if lineage is not None and lineage.data_hash:
        return lineage.data_hash, lineage.data_hash_source or "dvc@commit"
    return manifest_digest(train_manifest), "manifest"


def lineage_tags(lineage: DataLineage | None, data_version: str | None) -> dict[str, str]:
    """The run tags that say which data it read (see `register_stage`)."""
    if lineage is None:
        requested = data_version or UNRESOLVED_REVISION
        return {"data_version": requested, "data_revision_requested": requested, "data_lineage": "unrecorded"}
    tags = {"data_version": lineage.commit, "data_revision_requested": lineage.requested, "data_lineage": "fetched"}
    if lineage.base_commit:
        tags["data_base_commit"] = lineage.base_commit  # workspace data: the commit it sat beside
    return tags
