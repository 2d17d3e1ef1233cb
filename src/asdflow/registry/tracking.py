"""MLflow tracking: where runs go, and what one training run records.

One training run records the flattened config (params), the DCASE scores
overall, per machine type and per section (metrics), the ROC and score
histogram plots and the DCASE submission CSVs (artifacts), the git commit and
the DVC data hash (tags, plus the manifest as an MLflow dataset input whose
digest is that hash).

Relative paths in the tracking config (the default `sqlite:///mlruns/mlflow.db`
and `mlruns/artifacts`) are made absolute against the project directory, so
pipeline components running as subprocesses in other working directories all
write to the same store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from asdflow.config import AsdflowConfig, TrackingConfig
from asdflow.data.manifest import Manifest
from asdflow.errors import AsdflowError, one_line

# Config sections that shape a trained detector; cluster, serving and tracking do not.
PARAM_SECTIONS = ("features", "detector", "synth", "validation", "gate")
_PARAM_VALUE_LIMIT = 6000  # MLflow's limit on one param value
_DIGEST_LIMIT = 36  # MLflow's column width for a dataset digest
_LOCAL_SCHEMES = ("sqlite", "file", "")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


class TrackingError(AsdflowError):
    """The MLflow store cannot be reached or written."""


class TrainingRun(BaseModel):
    """What `log_training_run` recorded, for the next pipeline step."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    machine_type: str
    git_commit: str | None = None
    data_hash: str | None = None
    data_hash_source: str | None = None  # "given" (or the giver's own word, e.g. "dvc@commit") | "dvc" | "manifest"
    metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)  # artifact paths inside the run


# -- where ------------------------------------------------------------------


def _scheme(uri: str) -> str:
    head, sep, _ = uri.partition(":")
    # plain paths (and "C:\...") have no scheme; a scheme is RFC 3986's letter, then letters, digits, + - .
    return head.lower() if sep and len(head) > 1 and _SCHEME.match(head) else ""


def is_local_store(tracking_uri: str) -> bool:
    return _scheme(tracking_uri) in _LOCAL_SCHEMES


def resolve_tracking(tracking: TrackingConfig, project_dir: str | Path | None = None) -> TrackingConfig:
    """A copy of `tracking` whose relative local paths are absolute against `project_dir` (default: cwd).

    For a remote server (http, https, databricks...) a local artifact location is
    dropped: the server decides where artifacts go (its --artifacts-destination);
    an object-store URI (s3://, gs://, mlflow-artifacts:/) is kept.
    """
    base = Path(project_dir or Path.cwd()).resolve()
    uri = tracking.tracking_uri.strip()
    scheme = _scheme(uri)
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else uri.split(":", 1)[1].lstrip("/")
        if path != ":memory:" and not Path(path).is_absolute() and not uri.startswith("sqlite:////"):
            uri = f"sqlite:///{(base / path).as_posix()}"
    elif scheme == "file":
        path = uri[len("file://"):] if uri.startswith("file://") else uri[len("file:"):]
        if not Path(path).is_absolute():
            uri = (base / path).as_uri()
    elif scheme == "":
        uri = (base / uri).as_uri() if not Path(uri).is_absolute() else Path(uri).as_uri()

    location: str | None = tracking.artifact_location.strip() or None
    if location is not None and _scheme(location) in ("", "file"):
        if not is_local_store(uri):
            location = None
        elif _scheme(location) == "":
            location = str(Path(location) if Path(location).is_absolute() else base / location)
    elif location is None and _scheme(uri) == "sqlite" and _sqlite_path(uri) is not None:
        # MLflow's own default would be ./mlruns of whatever the working directory is
        location = str(_sqlite_path(uri).parent / "artifacts")
    return tracking.model_copy(update={"tracking_uri": uri, "artifact_location": location or ""})


def _sqlite_path(uri: str) -> Path | None:
    """The database file of an absolute sqlite://// URI (None for :memory: and relative ones)."""
    if not uri.startswith("sqlite:////"):
        return None
    return Path(uri[len("sqlite:///"):])


def ui_hint(tracking: TrackingConfig, project_dir: str | Path | None = None) -> str:
    """How to look at the runs and models: a `mlflow ui` command for a local store, else the server's URL."""
    resolved = resolve_tracking(tracking, project_dir)
    if is_local_store(resolved.tracking_uri):
        return f"mlflow ui --backend-store-uri {resolved.tracking_uri} --host 127.0.0.1 --port 5000"
    return f"open {resolved.tracking_uri}"


def _ensure_local_dirs(tracking: TrackingConfig) -> None:
    db = _sqlite_path(tracking.tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    if tracking.artifact_location and _scheme(tracking.artifact_location) == "":
        Path(tracking.artifact_location).mkdir(parents=True, exist_ok=True)


def configure_tracking(tracking: TrackingConfig, project_dir: str | Path | None = None) -> str:
    """Point MLflow (tracking and registry) at the configured store; create the experiment if missing.

    Returns the experiment id. MLflow's fluent API (start_run, log_model,
    pyfunc.load_model("models:/...")) reads these process-wide settings.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    resolved = resolve_tracking(tracking, project_dir)
    _ensure_local_dirs(resolved)
    mlflow.set_tracking_uri(resolved.tracking_uri)
    mlflow.set_registry_uri(resolved.tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=resolved.tracking_uri, registry_uri=resolved.tracking_uri)
    try:
        experiment = client.get_experiment_by_name(resolved.experiment)
        if experiment is None:
            try:
                return client.create_experiment(resolved.experiment, artifact_location=resolved.artifact_location or None)
            except MlflowException as err:
                # another pipeline step created it meanwhile
                experiment = client.get_experiment_by_name(resolved.experiment)
                if experiment is None:
                    raise err from None
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    except MlflowException as err:
        raise TrackingError(f"MLflow store {resolved.tracking_uri}: {one_line(err)}") from None


def tracking_client(tracking: TrackingConfig, project_dir: str | Path | None = None):
    """An MlflowClient on the configured store (tracking and registry), experiment ensured."""
    import mlflow

    configure_tracking(tracking, project_dir)
    uri = resolve_tracking(tracking, project_dir).tracking_uri
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def artifact_progress(enabled: bool) -> Iterator[None]:
    """MLflow's artifact download bars on or off for a block (they clutter pipeline logs)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "true" if enabled else "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


# -- provenance ----------------------------------------------------------------


GIT_COMMIT_ENV = "ASDFLOW_GIT_COMMIT"  # baked into the images (build argument): they carry no .git
UNKNOWN_COMMIT = "unknown"  # the images' default when built without the build argument


def commit_from_environment() -> str | None:
    """$ASDFLOW_GIT_COMMIT, unless unset, empty or the images' "unknown" placeholder."""
    value = os.environ.get(GIT_COMMIT_ENV, "").strip()
    return value if value and value != UNKNOWN_COMMIT else None


def git_commit(project_dir: str | Path | None = None) -> str | None:
    """The commit of the code that runs: $ASDFLOW_GIT_COMMIT when set (the images), else
    `git rev-parse HEAD` of the project, else None (no repository, or before the first commit)."""
    return commit_from_environment() or _git_head(project_dir)


def _git_head(project_dir: str | Path | None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=str(project_dir or Path.cwd()),
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) >= 7 else None


def git_dirty(project_dir: str | Path | None = None) -> bool | None:
    """True when tracked files differ from HEAD (the commit alone does not reproduce the run)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=str(project_dir or Path.cwd()),
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def dvc_data_hash(project_dir: str | Path | None = None, dvc_file: str = "data.dvc") -> str | None:
    """The md5 DVC recorded for the tracked data (`outs[0].md5` of data.dvc), or None."""
    import yaml

    path = Path(project_dir or Path.cwd()) / dvc_file
    if not path.exists():
        return None
    try:
        meta = yaml.safe_load(path.read_text()) or {}
        outs = meta.get("outs") or []
        value = outs[0].get("md5") if outs else None
    except (yaml.YAMLError, AttributeError, IndexError):
        return None
    return str(value) if value else None


def manifest_digest(manifest: Manifest) -> str:
    """A content digest of a manifest (names, labels, domains, md5s): the data hash without DVC."""
    digest = hashlib.md5()
    for r in sorted(manifest.records, key=lambda r: (r.machine_type, r.split, r.name)):
        digest.update("|".join(
            str(v) for v in (r.machine_type, r.section, r.split, r.domain, r.label, r.name, r.md5 or r.duration)
        ).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def flatten_params(config: AsdflowConfig | Mapping[str, Any], sections: Sequence[str] = PARAM_SECTIONS) -> dict[str, str]:
    """Nested config -> {"detector.baseline_ae.epochs": "3", ...}, as MLflow params."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    picked = {k: data[k] for k in sections if k in data}
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[prefix] = text[:_PARAM_VALUE_LIMIT]

    walk("", {**top, **picked})
    return out


# -- one training run ------------------------------------------------------------


def _write_selection_files(tmp: Path, machine_type: str, key: str, choice: dict[str, Any]) -> list[Path]:
    """selection/<key>_<machine>.json (the proxy table and the choice) and its bar plot."""
    from asdflow.evaluation.plots import plot_selection

    folder = tmp / "selection"
    folder.mkdir(exist_ok=True)
    table = folder / f"{key}_{machine_type}.json"
    table.write_text(json.dumps(choice, indent=2, default=float))
    plot = plot_selection(choice, folder / f"{key}_{machine_type}.png", f"{machine_type}: {key} -> {choice.get('chosen')}")
    return [table, plot]


def _artifact_folder(path: Path) -> str | None:
    if path.parent.name == "selection":
        return "selection"
    if path.suffix.lower() == ".png":
        return "plots"
    if path.name.startswith(("anomaly_score_", "decision_result_")):
        return "submission"
    return None


def log_training_run(
    machine_type: str,
    config: AsdflowConfig,
    *,
    report: Any | None = None,
    scores: Mapping[str, float] | None = None,
    eval_manifest: Manifest | None = None,
    train_manifest: Manifest | None = None,
    detector_dir: str | Path | None = None,
    threshold: float | None = None,
    artifacts: Sequence[str | Path] = (),
    project_dir: str | Path | None = None,
    data_hash: str | None = None,
    data_hash_source: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> TrainingRun:
    """Record one training run of one machine type's detector in MLflow; returns its run id and what it logged.

    - params: the flattened config (`flatten_params`);
    - metrics: `report.to_metrics()` (official, auc_source, auc_target, pauc overall,
      per machine type "<mt>.<metric>", per section "<mt>.section_<XX>.<metric>"),
      and the detector's numeric fit summary as "fit.<key>";
    - artifacts: with `scores` (name -> score) and `eval_manifest`, the report is
      computed if not given, and the ROC and histogram PNGs and the DCASE submission
      CSVs are written and logged; `artifacts` adds already-written files (PNGs go to
      plots/, submission CSVs to submission/, folders keep their name);
    - tags: git_commit ($ASDFLOW_GIT_COMMIT, else git, else "unknown"), git_dirty, dvc_data_hash,
      data_hash_source, machine_type, detector_family; the data hash is `data_hash` (its source
      `data_hash_source`, default "given"), else data.dvc's md5 in `project_dir`, else a digest of
      the training manifest;
    - dataset inputs: the training manifest (context "training") and the evaluation
      manifest (context "evaluation") as pandas datasets whose digest is the data hash.
    """
    import mlflow

    from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest

    experiment_id = configure_tracking(config.tracking, project_dir)
    commit = git_commit(project_dir)
    # an image's baked commit says nothing of the checkout that may sit in the working directory
    dirty = git_dirty(project_dir) if commit and not commit_from_environment() else None
    if data_hash:
        hash_source = data_hash_source or "given"
    elif (data_hash := dvc_data_hash(project_dir)) is not None:
        hash_source = "dvc"
    elif train_manifest is not None or eval_manifest is not None:
        data_hash = manifest_digest(train_manifest if train_manifest is not None else eval_manifest)
        hash_source = "manifest"
    else:
        hash_source = None

    detector_meta: dict[str, Any] = {}
    if detector_dir is not None:
        meta_file = Path(detector_dir) / "detector.json"
        if meta_file.exists():
            detector_meta = json.loads(meta_file.read_text())
    if threshold is None:
        threshold = detector_meta.get("threshold")

    ground_truth = None
    if scores is not None and eval_manifest is not None:
        ground_truth = ground_truth_from_manifest(eval_manifest.select(machine_type=machine_type))
        if report is None:
            report = evaluate_scores(ground_truth, scores)

    not_evaluated = getattr(report, "not_evaluated", None)  # no labelled anomalies: NaN scores, not logged
    metrics: dict[str, float] = {k: v for k, v in (report.to_metrics() if report is not None else {}).items()
                                 if math.isfinite(v)}
    fit_info = detector_meta.get("fit_info") or {}
    for key, value in fit_info.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"fit.{key}"] = float(value)
    # the label-free choice (twfr: pooling + scorer; frame families: time pooling) and its proxy table
    choices = {k: fit_info[k] for k in ("selection", "time_pooling") if isinstance(fit_info.get(k), dict)}

    run_tags = {
        "machine_type": machine_type,
        "detector_family": detector_meta.get("family") or config.detector.family,
        "asdflow_profile": config.profile,
        "git_commit": commit or "unknown",
        "dvc_data_hash": data_hash or "unknown",
        "data_hash_source": hash_source or "none",
    }
    if commit:
        run_tags["mlflow.source.git.commit"] = commit
    if dirty is not None:
        run_tags["git_dirty"] = str(dirty).lower()
    for key, choice in choices.items():
        run_tags[f"{key}.chosen"] = str(choice.get("chosen"))
        run_tags[f"{key}.strategy"] = str(choice.get("strategy"))
    if not_evaluated:
        run_tags["evaluation.not_evaluated"] = not_evaluated[:250]
    run_tags.update(tags or {})

    logged: list[str] = []
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or f"train-{machine_type}") as run:
        mlflow.set_tags(run_tags)
        mlflow.log_params(flatten_params(config))
        if metrics:
            mlflow.log_metrics(metrics)
        for context, manifest in (("training", train_manifest), ("evaluation", eval_manifest)):
            if manifest is not None:
                _log_dataset(manifest, machine_type, context, data_hash)
        if report is not None:
            mlflow.log_dict(report.to_dict(), "evaluation/report.json")
            logged.append("evaluation/report.json")
        with tempfile.TemporaryDirectory(prefix="asdflow-run-") as tmp:
            written: list[Path] = []
            if ground_truth is not None and scores is not None and not not_evaluated:
                written += _write_evaluation_files(Path(tmp), machine_type, ground_truth, scores, threshold)
            for key, choice in choices.items():
                written += _write_selection_files(Path(tmp), machine_type, key, choice)
            for path in [*written, *(Path(a) for a in artifacts)]:
                if not path.exists():
                    raise TrackingError(f"artifact to log does not exist: {path}")
                if path.is_dir():
                    mlflow.log_artifacts(str(path), artifact_path=path.name)
                    logged.append(path.name + "/")
                else:
                    folder = _artifact_folder(path)
                    mlflow.log_artifact(str(path), artifact_path=folder)
                    logged.append(f"{folder}/{path.name}" if folder else path.name)
    return TrainingRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        tracking_uri=mlflow.get_tracking_uri(),
        machine_type=machine_type,
        git_commit=commit,
        data_hash=data_hash,
        data_hash_source=hash_source,
        metrics=metrics,
        artifacts=logged,
    )


def _log_dataset(manifest: Manifest, machine_type: str, context: str, data_hash: str | None) -> None:
    import mlflow
    import mlflow.data

    digest = (data_hash or manifest_digest(manifest)).removesuffix(".dir")[:_DIGEST_LIMIT]
    frame = manifest.to_frame()
    with warnings.catch_warnings():
        # a local folder matches MLflow's local source twice; the manifest's int columns get a NaN hint
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
        warnings.filterwarnings("ignore", message=".*integer column.*")
        dataset = mlflow.data.from_pandas(
            frame, source=str(manifest.root or "manifest"), name=f"{machine_type}-{context}", digest=digest
        )
        mlflow.log_input(dataset, context=context)


def _write_evaluation_files(
    directory: Path, machine_type: str, ground_truth, scores: Mapping[str, float], threshold: float | None
) -> list[Path]:
    """ROC and histogram PNGs and the submission CSVs of the evaluated clips."""
    from asdflow.evaluation.plots import plot_roc, plot_score_histogram
    from asdflow.evaluation.submission import write_submission

    names = set(ground_truth["name"])
    mine = {k: v for k, v in scores.items() if k in names}
    paths = [
        plot_roc(ground_truth, mine, directory / f"roc_{machine_type}.png", title=f"ROC, {machine_type}"),
        plot_score_histogram(ground_truth, mine, directory / f"score_histogram_{machine_type}.png",
                             threshold=threshold, title=f"Anomaly scores, {machine_type}"),
    ]
    if threshold is not None:
        decisions = {k: bool(v > threshold) for k, v in mine.items()}
        paths += write_submission(directory / "submission", mine, decisions, ground_truth)
    return paths
