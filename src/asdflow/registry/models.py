"""The model registry: one registered model per machine type, `asd-<machine_type>`.

MLflow 3 aliases, not stages: `@challenger` is the newest registered candidate,
`@champion` the one served. Promotion moves `@champion` only if it still points
where the gate saw it (re-read just before the move), and records the version it
replaced in the new champion's `previous_champion` tag, so `rollback` can move
it back. `search_model_versions` does not fill in aliases in MLflow 3.17, so
aliases are always read with `get_model_version_by_alias`.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from asdflow.config import AsdflowConfig, TrackingConfig
from asdflow.errors import AsdflowError, one_line

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)
NO_CHAMPION = "none"  # what tags and the CLI write for "there was no champion"
METRIC_TAGS = ("official", "auc_source", "auc_target", "pauc")


class RegistryError(AsdflowError):
    """A registered model, version or alias is missing or cannot be changed."""


class ChampionChangedError(RegistryError):
    """@champion moved between the gate's decision and the promotion: nothing was changed."""


class ModelVersionInfo(BaseModel):
    name: str
    version: str
    aliases: list[str] = Field(default_factory=list)
    run_id: str | None = None
    source: str | None = None
    created: str | None = None  # ISO time
    tags: dict[str, str] = Field(default_factory=dict)

    def metric(self, name: str) -> float | None:
        value = self.tags.get(name)
        try:
            return float(value) if value not in (None, "") else None
        except ValueError:
            return None


class RegisteredDetector(BaseModel):
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/asd-<mt>/<version>
    alias: str | None = None


class Comparison(BaseModel):
    machine_type: str
    name: str
    champion: ModelVersionInfo | None = None
    challenger: ModelVersionInfo | None = None

    def rows(self) -> list[tuple[str, str, str]]:
        """(field, champion, challenger) rows for a table."""
        def cell(info: ModelVersionInfo | None, key: str) -> str:
            if info is None:
                return "-"
            if key == "version":
                return info.version
            value = info.tags.get(key)
            if value is None:
                return "-"
            try:
                return f"{float(value):.4f}" if key in (*METRIC_TAGS, "threshold") else value
            except ValueError:
                return value

        keys = ["version", *METRIC_TAGS, "threshold", "detector_family", "data_version", "dvc_data_hash",
                "git_commit", "gate_verdict", "run_id"]
        return [(k, cell(self.champion, k), cell(self.challenger, k)) for k in keys]

    def to_table(self) -> str:
        rows = [("", "champion", "challenger"), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


class PromotionResult(BaseModel):
    name: str
    version: str
    previous_champion: str | None
    action: str  # "promoted" | "rolled_back" | "unchanged"


# -- names and clients ------------------------------------------------------------


def _tracking(config: AsdflowConfig | TrackingConfig | None) -> TrackingConfig:
    if config is None:
        return TrackingConfig()
    return config.tracking if isinstance(config, AsdflowConfig) else config


def model_name(machine_type: str, config: AsdflowConfig | TrackingConfig | None = None) -> str:
    return _tracking(config).model_name_template.format(machine_type=machine_type)


def _client(config, project_dir):
    from asdflow.registry.tracking import tracking_client

    return tracking_client(_tracking(config), project_dir)


def alias_version(client, name: str, alias: str) -> str | None:
    """The version an alias points to, or None (no such alias or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        if _not_found(err):
            return None
        raise RegistryError(f"cannot read {name}@{alias}: {one_line(err)}") from None


def _not_found(err: Exception) -> bool:
    code = getattr(err, "error_code", "") or ""
    text = str(err).lower()
    return "RESOURCE_DOES_NOT_EXIST" in code or "not found" in text or "does not exist" in text


def _version_info(client, name: str, version: str, aliases: list[str]) -> ModelVersionInfo:
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as err:
        raise RegistryError(f"{name} has no version {version}: {one_line(err)}") from None
    created = None
    if mv.creation_timestamp:
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(mv.creation_timestamp / 1000))
    return ModelVersionInfo(
        name=name, version=str(mv.version), aliases=aliases, run_id=mv.run_id or None,
        source=mv.source, created=created, tags=dict(mv.tags or {}),
    )


# -- register ---------------------------------------------------------------------


def register_detector(
    detector_dir: str | Path,
    machine_type: str,
    config: AsdflowConfig | TrackingConfig | None = None,
    *,
    run_id: str | None = None,
    report: Any | None = None,
    data_hash: str | None = None,
    project_dir: str | Path | None = None,
    alias: str | None = CHALLENGER,
    tags: Mapping[str, str] | None = None,
    separator_dir: str | Path | None = None,
) -> RegisteredDetector:
    """Log the saved detector as a pyfunc model into `run_id` (or a new run), register it
    as `asd-<machine_type>`, and point `alias` (default `challenger`) at the new version.
    With `separator_dir` (the separator it was trained behind) the model carries it and
    applies it before scoring (version tag `separator_version`, its weights' sha256).

    Version tags: detector_family, machine_type, run_id, threshold, official /
    auc_source / auc_target / pauc (the machine type's scores in `report`, else the
    run's logged metrics), dvc_data_hash, git_commit and data_version (from the run's tags when not given).
    """
    import json

    import mlflow
    from mlflow.exceptions import MlflowException

    from asdflow.registry.pyfunc_model import (
        DETECTOR_ARTIFACT,
        MODEL_NAME_IN_RUN,
        SEPARATOR_ARTIFACT,
        model_signature,
        pip_requirements,
        write_entry_script,
    )
    from asdflow.registry.tracking import artifact_progress, configure_tracking

    detector_dir = Path(detector_dir)
    meta_file = detector_dir / "detector.json"
    if not meta_file.exists():
        raise RegistryError(f"no detector to register in {detector_dir}: detector.json is missing")
    meta = json.loads(meta_file.read_text())
    if meta.get("machine_type") not in (None, machine_type):
        raise RegistryError(
            f"{detector_dir} holds a {meta['machine_type']} detector, not one for {machine_type}"
        )
    artifacts = {DETECTOR_ARTIFACT: str(detector_dir)}
    separator_version = None
    if separator_dir is not None:
        separator_info = Path(separator_dir) / "separator.json"
        if not separator_info.is_file():
            raise RegistryError(f"no separator to carry in {separator_dir}: separator.json is missing")
        artifacts[SEPARATOR_ARTIFACT] = str(separator_dir)
        separator_version = str(json.loads(separator_info.read_text()).get("version", "unknown"))
    tracking = _tracking(config)
    experiment_id = configure_tracking(tracking, project_dir)
    name = model_name(machine_type, tracking)
    client = mlflow.MlflowClient()

    run_context = (mlflow.start_run(run_id=run_id) if run_id
                   else mlflow.start_run(experiment_id=experiment_id, run_name=f"register-{machine_type}"))
    try:
        with run_context as run, tempfile.TemporaryDirectory(prefix="asdflow-model-") as tmp, \
                warnings.catch_warnings(), artifact_progress(False):
            # no input example on purpose: a 10 s waveform is 160k numbers in the model's metadata
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                python_model=str(write_entry_script(tmp)),
                artifacts=artifacts,
                pip_requirements=pip_requirements(),
                signature=model_signature(),
            )
            run_id = run.info.run_id
        run_data = client.get_run(run_id).data
        version_tags = {
            "machine_type": machine_type,
            "detector_family": str(meta.get("family", "")),
            "run_id": run_id,
            "threshold": repr(float(meta["threshold"])) if meta.get("threshold") is not None else "",
            "dvc_data_hash": data_hash or run_data.tags.get("dvc_data_hash", "unknown"),
            "git_commit": run_data.tags.get("git_commit", "unknown"),
            "data_version": run_data.tags.get("data_version", "unknown"),  # the data commit the run read
        }
        if separator_version is not None:
            version_tags["separator_version"] = separator_version
        version_tags.update(_metric_tags(report, machine_type, run_data.metrics))
        version_tags.update(tags or {})
        mv = mlflow.register_model(info.model_uri, name, tags=version_tags)
        client.set_registered_model_tag(name, "machine_type", machine_type)
        if alias:
            client.set_registered_model_alias(name, alias, str(mv.version))
    except MlflowException as err:
        raise RegistryError(f"cannot register {detector_dir} as {name}: {one_line(err)}") from None
    return RegisteredDetector(
        name=name, version=str(mv.version), run_id=run_id, model_uri=f"models:/{name}/{mv.version}", alias=alias
    )


def _metric_tags(report: Any | None, machine_type: str, run_metrics: Mapping[str, float]) -> dict[str, str]:
    values: dict[str, float] = {}
    if report is not None:
        score = report.machine_types.get(machine_type, report.overall)
        values = {k: float(getattr(score, k)) for k in METRIC_TAGS}
    else:
        for key in METRIC_TAGS:
            for name in (f"{machine_type}.{key}", key):
                if name in run_metrics:
                    values[key] = float(run_metrics[name])
                    break
    return {k: repr(v) for k, v in values.items() if math.isfinite(v)}


# -- read -------------------------------------------------------------------------


def current_aliases(machine_type: str, config=None, project_dir=None, client=None) -> dict[str, str | None]:
    """{"champion": version|None, "challenger": version|None}."""
    client = client or _client(config, project_dir)
    name = model_name(machine_type, config)
    return {alias: alias_version(client, name, alias) for alias in ALIASES}


def list_models(
    machine_type: str, config: AsdflowConfig | TrackingConfig | None = None, project_dir: str | Path | None = None
) -> list[ModelVersionInfo]:
    """Every version of `asd-<machine_type>`, newest first, with its aliases and tags."""
    from mlflow.exceptions import MlflowException

    client = _client(config, project_dir)
    name = model_name(machine_type, config)
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as err:
        raise RegistryError(f"cannot list versions of {name}: {one_line(err)}") from None
    aliases: dict[str, list[str]] = {}
    for alias in ALIASES:
        version = alias_version(client, name, alias)
        if version is not None:
            aliases.setdefault(version, []).append(alias)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        version = str(mv.version)
        out.append(_version_info(client, name, version, aliases.get(version, [])))
    return out


def compare(
    machine_type: str, config: AsdflowConfig | TrackingConfig | None = None, project_dir: str | Path | None = None
) -> Comparison:
    """@champion beside @challenger (their registered tags: scores at registration, gate verdict)."""
    client = _client(config, project_dir)
    name = model_name(machine_type, config)
    found = {alias: alias_version(client, name, alias) for alias in ALIASES}
    if all(v is None for v in found.values()) and not _model_exists(client, name):
        raise RegistryError(f"no registered model {name}: train and register a {machine_type} detector first")
    by_version: dict[str, list[str]] = {}
    for alias, version in found.items():
        if version is not None:
            by_version.setdefault(version, []).append(alias)
    infos = {
        alias: _version_info(client, name, version, by_version[version]) if version is not None else None
        for alias, version in found.items()
    }
    return Comparison(machine_type=machine_type, name=name, champion=infos[CHAMPION], challenger=infos[CHALLENGER])


def _model_exists(client, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException as err:
        if _not_found(err):
            return False
        raise RegistryError(f"cannot read {name}: {one_line(err)}") from None


# -- move @champion ------------------------------------------------------------------


def promote(
    machine_type: str,
    version: str | int,
    expected_champion: str | int | None,
    config: AsdflowConfig | TrackingConfig | None = None,
    project_dir: str | Path | None = None,
    reason: str | None = None,
) -> PromotionResult:
    """Point `@champion` of `asd-<machine_type>` at `version`, if it still points at `expected_champion`.

    `expected_champion` is the version the gate compared against (None: there was no
    champion). `@champion` is re-read just before the move; if it differs, raises
    ChampionChangedError and changes nothing. The replaced version is recorded in
    the new champion's version tag `previous_champion` and the model tag of the same name.
    """
    from mlflow.exceptions import MlflowException

    from asdflow.registry.promotion_lock import PromotionConflict, promotion_lock
    from asdflow.registry.tracking import resolve_tracking

    tracking = resolve_tracking(_tracking(config), project_dir)
    client = _client(tracking, project_dir)
    name = model_name(machine_type, config)
    version = str(version)
    expected = _normalise_version(expected_champion)
    _version_info(client, name, version, [])  # the target must exist
    try:
        # read, check and write under the model's promotion lock: exactly one overlapping promotion wins
        with promotion_lock(client, tracking.tracking_uri, name, version):
            return _promote_locked(client, name, version, expected, reason)
    except PromotionConflict as conflict:
        raise ChampionChangedError(
            f"{name}: {conflict.holder} is under way; version {version} was not promoted (re-run the gate)"
        ) from None
    except MlflowException as err:
        raise RegistryError(f"cannot promote {name} version {version}: {one_line(err)}") from None


def _promote_locked(client, name: str, version: str, expected: str | None, reason: str | None) -> PromotionResult:
    current = alias_version(client, name, CHAMPION)
    if current != expected:
        raise ChampionChangedError(
            f"{name}@{CHAMPION} is {_show(current)}, but the decision to promote version "
            f"{version} was made against {_show(expected)}: re-run the gate before promoting"
        )
    if current == version:
        return PromotionResult(name=name, version=version, previous_champion=current, action="unchanged")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    client.set_registered_model_alias(name, CHAMPION, version)
    if alias_version(client, name, CHAMPION) != version:  # a writer outside the lock (see promotion_lock)
        raise ChampionChangedError(f"{name}@{CHAMPION} was moved by another promotion while version {version} "
                                   f"was being promoted: re-run the gate")
    # the records follow the alias, so a refused promotion leaves no promoted_at behind
    client.set_model_version_tag(name, version, "previous_champion", current or NO_CHAMPION)
    client.set_model_version_tag(name, version, "promoted_at", stamp)
    if reason:
        client.set_model_version_tag(name, version, "promotion_reason", reason[:5000])
    client.set_registered_model_tag(name, "previous_champion", current or NO_CHAMPION)
    client.set_registered_model_tag(name, "champion_changed_at", stamp)
    return PromotionResult(name=name, version=version, previous_champion=current, action="promoted")


def rollback(
    machine_type: str,
    config: AsdflowConfig | TrackingConfig | None = None,
    project_dir: str | Path | None = None,
) -> PromotionResult:
    """Move `@champion` back to the version it replaced (the current champion's `previous_champion` tag).

    Repeated rollbacks walk further back along the chain of promotions.
    """
    from mlflow.exceptions import MlflowException

    client = _client(config, project_dir)
    name = model_name(machine_type, config)
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no @{CHAMPION} to roll back")
    info = _version_info(client, name, current, [CHAMPION])
    previous = _normalise_version(info.tags.get("previous_champion"))
    if previous is None:
        raise RegistryError(
            f"{name}@{CHAMPION} (version {current}) has no recorded previous champion: nothing to roll back to"
        )
    restored = _version_info(client, name, previous, [])  # it must still exist
    try:
        client.set_registered_model_alias(name, CHAMPION, previous)
        client.set_model_version_tag(name, current, "rolled_back_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        client.set_registered_model_tag(name, "previous_champion", restored.tags.get("previous_champion", NO_CHAMPION))
        client.set_registered_model_tag(name, "rolled_back_from", current)
    except MlflowException as err:
        raise RegistryError(f"cannot roll {name} back to version {previous}: {one_line(err)}") from None
    return PromotionResult(name=name, version=previous, previous_champion=current, action="rolled_back")


def _normalise_version(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in ("", NO_CHAMPION, "null") else text


def _show(version: str | None) -> str:
    return f"version {version}" if version is not None else "unset (no champion)"
