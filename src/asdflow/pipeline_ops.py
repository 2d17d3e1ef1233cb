"""The KFP-free side of the pipelines: how config travels into a step, and what a schedule should be.

- A pipeline step receives its config as two string parameters (a profile name
  and overrides as JSON text) and rebuilds it with `component_config`; on a
  cluster the MLflow Secret's `MLFLOW_TRACKING_URI` (an env var set by
  kfp-kubernetes, read by `load_config`) names the store unless the overrides do.
- `plan_schedules` compares the recurring runs a schedules file asks for (its rule
  expanded over the machine types in the data) with
  the ones a Kubeflow Pipelines server has and says what to create, recreate,
  enable, disable or delete, so that applying the plan twice changes nothing.

Nothing here imports kfp: the KFP calls live in `pipelines/` (repo root).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from asdflow.config import AsdflowConfig, _read_yaml, deep_merge, load_config
from asdflow.errors import ConfigError

LATEST_REVISION = "HEAD"  # what a cluster run fetches by default: the data committed last
MANAGED_MARK = "managed by asdflow pipeline schedule"  # in a recurring run's description
MANAGED_PREFIX = "asdflow-retrain-"  # asdflow.schedules.ScheduleSpec.name; other recurring runs are never touched
_FINGERPRINT_KEY = "fingerprint="


# -- config as pipeline parameters -------------------------------------------------------


def encode_overrides(overrides: Mapping[str, Any] | None) -> str:
    """Overrides as the `config_overrides` pipeline parameter: compact JSON, keys sorted (stable text)."""
    return json.dumps(dict(overrides or {}), sort_keys=True, separators=(",", ":"), default=str)


def decode_overrides(text: str | None) -> dict[str, Any]:
    import yaml  # JSON is YAML: a hand-written YAML mapping is accepted as well

    if not text or not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config_overrides is neither JSON nor YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config_overrides must be a mapping, got {type(data).__name__}")
    return data


def component_config(profile: str, overrides: str | None = None) -> AsdflowConfig:
    """The config a pipeline step runs with: the profile, then `$MLFLOW_TRACKING_URI` (on a
    cluster, the MLflow Secret mounted by kfp-kubernetes; `load_config` reads it), then the
    overrides. A local run's overrides name an absolute store, so its subprocesses share it."""
    data = decode_overrides(overrides)
    data.pop("profile", None)  # the profile parameter decides
    return load_config(profile=profile or None, overrides=data)


def user_overrides(config_file: str | Path | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a user changed over the profile: their config file's mapping, then `extra` (CLI flags).

    The profile itself is not an override (it travels as its own parameter).
    """
    data = _read_yaml(Path(config_file)) if config_file else {}
    data = deep_merge(data, dict(extra or {}))
    data.pop("profile", None)
    return data


def local_tracking_overrides(config: AsdflowConfig, project_dir: str | Path | None = None) -> dict[str, Any]:
    """The config's MLflow store with relative paths made absolute (against `project_dir`, default cwd),
    so every kfp.local subprocess writes to the same SQLite file and artifact folder."""
    from asdflow.registry.tracking import resolve_tracking

    resolved = resolve_tracking(config.tracking, project_dir)
    return {"tracking": {"tracking_uri": resolved.tracking_uri, "artifact_location": resolved.artifact_location}}


def local_data_version(project: str | Path, config: AsdflowConfig) -> str:
    """The revision a local run reads by default: the last commit of data.dvc, or `workspace`
    (the data folder as it is) when it is uncommitted or the project does not use DVC."""
    from asdflow.data.versioning import WORKSPACE, current_data_version
    from asdflow.errors import DataError

    try:
        return current_data_version(project, config.data).rev
    except DataError:
        return WORKSPACE


def cluster_project(project: str | None) -> str:
    """The project as a cluster step reaches it: `project` when given, else this checkout's
    `origin` git URL (the cluster clones the same repository), else "." (a checkout in the image)."""
    import subprocess

    if project:
        return project
    try:
        done = subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=project_root(),
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "."
    return done.stdout.strip() or "."


def project_root() -> Path:
    """The checkout holding src/, components/ and pipelines/ (an editable install points here)."""
    return Path(__file__).resolve().parents[2]


def ensure_pipelines_importable() -> Path:
    """Put the project root on sys.path so `import pipelines, components` works from the CLI.

    They live beside src/ (the architecture keeps KFP out of the installed package),
    so they exist only in a checkout: an installed-only asdflow cannot compile pipelines.
    """
    root = project_root()
    if not (root / "pipelines" / "__init__.py").is_file() or not (root / "components" / "__init__.py").is_file():
        raise ConfigError(
            f"pipelines/ and components/ not found under {root}: `asdflow pipeline` needs the project checkout "
            "(pip install -e .)"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


# -- recurring runs: desired vs existing -----------------------------------------------------


class DesiredRecurringRun(BaseModel):
    """One schedule of the schedules file, as the recurring run it should be on the server."""

    name: str  # display name; reconciliation matches on it
    machine_type: str
    cron: str
    max_concurrency: int
    no_catchup: bool
    enabled: bool
    parameters: dict[str, Any]
    service_account: str | None = None
    pipeline_digest: str  # sha256 of the compiled pipeline package

    def fingerprint(self) -> str:
        """Everything that defines the run except `enabled` (toggling it needs no re-creation)."""
        payload = self.model_dump(mode="json", exclude={"enabled", "name", "machine_type"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]

    def description(self) -> str:
        return f"asdflow retraining of {self.machine_type}; {MANAGED_MARK}; {_FINGERPRINT_KEY}{self.fingerprint()}"


class ExistingRecurringRun(BaseModel):
    """A recurring run as the server lists it (only the fields reconciliation reads)."""

    id: str
    name: str
    description: str = ""
    cron: str | None = None
    max_concurrency: int | None = None
    no_catchup: bool | None = None
    enabled: bool = True

    @property
    def fingerprint(self) -> str | None:
        for part in self.description.split(";"):
            part = part.strip()
            if part.startswith(_FINGERPRINT_KEY):
                return part[len(_FINGERPRINT_KEY):]
        return None


ActionKind = Literal["create", "recreate", "enable", "disable", "delete", "keep", "absent"]


class ScheduleAction(BaseModel):
    action: ActionKind
    name: str
    reason: str
    existing_id: str | None = None
    desired: DesiredRecurringRun | None = None

    @property
    def changes(self) -> bool:
        return self.action not in ("keep", "absent")


class SchedulePlan(BaseModel):
    actions: list[ScheduleAction] = Field(default_factory=list)

    @property
    def changes(self) -> list[ScheduleAction]:
        return [a for a in self.actions if a.changes]

    def to_table(self) -> str:
        rows = [("recurring run", "action", "why")] + [(a.name, a.action, a.reason) for a in self.actions]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        return "\n".join(f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}" for r in rows)


def desired_recurring_runs(
    schedules: Any,
    base_parameters: Mapping[str, Any],
    pipeline_digest: str,
    service_account: str | None,
) -> list[DesiredRecurringRun]:
    """The recurring runs an `asdflow.schedules.RecurringSchedules` (the rule expanded over
    the machine types in the data, `SchedulesFile.expand`) asks for.

    Each run's parameters are `base_parameters` with the schedule's machine type,
    profile and data revision (`pinned:<rev>` -> `<rev>`; `latest` -> `HEAD`, the
    newest committed data when the run starts).
    """
    desired = []
    for spec in schedules.schedules:
        parameters = {
            **dict(base_parameters),
            "machine_type": spec.machine_type,
            "config_profile": spec.profile,
            "data_version": spec.pinned_revision or LATEST_REVISION,
        }
        desired.append(DesiredRecurringRun(
            name=spec.name, machine_type=spec.machine_type, cron=spec.cron, max_concurrency=spec.max_concurrency,
            no_catchup=spec.no_catchup, enabled=spec.enabled, parameters=parameters,
            service_account=service_account or None, pipeline_digest=pipeline_digest,
        ))
    return desired


def plan_schedules(
    desired: Sequence[DesiredRecurringRun],
    existing: Sequence[ExistingRecurringRun],
    managed_prefix: str = MANAGED_PREFIX,
    delete_unlisted: bool = True,
) -> SchedulePlan:
    """What to do so the server holds exactly the desired recurring runs.

    - desired and enabled: create if missing; recreate (delete + create) if its
      definition changed (the fingerprint in its description, cron, concurrency,
      catch-up); enable if only disabled; else keep;
    - desired but disabled in the file: disable it if it runs, else nothing
      (a disabled schedule is not created);
    - an existing run under `managed_prefix` that the file no longer names (its machine
      type left the data, say): delete, unless `delete_unlisted` is False (a plan
      narrowed to some machine types leaves the others' runs alone);
    - duplicates of one name: keep one, delete the others.
    Runs outside `managed_prefix` are never touched.
    """
    by_name: dict[str, list[ExistingRecurringRun]] = {}
    for run in existing:
        by_name.setdefault(run.name, []).append(run)
    actions: list[ScheduleAction] = []
    wanted = {d.name for d in desired}
    for want in desired:
        found = by_name.get(want.name, [])
        # prefer an up-to-date copy when there are several
        found = sorted(found, key=lambda r: (not _matches(want, r), not r.enabled, r.id))
        current, extra = (found[0], found[1:]) if found else (None, [])
        for dup in extra:
            actions.append(ScheduleAction(action="delete", name=dup.name, existing_id=dup.id,
                                          reason="duplicate of the same schedule"))
        if not want.enabled:
            if current is not None and current.enabled:
                actions.append(ScheduleAction(action="disable", name=want.name, existing_id=current.id,
                                              reason="disabled in the schedules file", desired=want))
            elif current is not None:
                actions.append(ScheduleAction(action="keep", name=want.name, existing_id=current.id,
                                              reason="disabled, as the schedules file says", desired=want))
            else:
                actions.append(ScheduleAction(action="absent", name=want.name,
                                              reason="disabled in the schedules file: not created", desired=want))
            continue
        if current is None:
            actions.append(ScheduleAction(action="create", name=want.name, reason="missing on the server",
                                          desired=want))
        elif not _matches(want, current):
            actions.append(ScheduleAction(action="recreate", name=want.name, existing_id=current.id,
                                          reason=_difference(want, current), desired=want))
        elif not current.enabled:
            actions.append(ScheduleAction(action="enable", name=want.name, existing_id=current.id,
                                          reason="enabled in the schedules file", desired=want))
        else:
            actions.append(ScheduleAction(action="keep", name=want.name, existing_id=current.id,
                                          reason="up to date", desired=want))
    for name, runs in sorted(by_name.items()):
        if not delete_unlisted or name in wanted or not name.startswith(managed_prefix):
            continue
        for run in runs:
            actions.append(ScheduleAction(action="delete", name=name, existing_id=run.id,
                                          reason="no longer in the schedules file or the data"))
    return SchedulePlan(actions=actions)


def _matches(want: DesiredRecurringRun, have: ExistingRecurringRun) -> bool:
    return (
        have.fingerprint == want.fingerprint()
        and have.cron == want.cron
        and have.max_concurrency == want.max_concurrency
        and bool(have.no_catchup) == want.no_catchup
    )


def _difference(want: DesiredRecurringRun, have: ExistingRecurringRun) -> str:
    if have.cron != want.cron:
        return f"cron {have.cron!r} -> {want.cron!r}"
    if have.max_concurrency != want.max_concurrency:
        return f"max concurrency {have.max_concurrency} -> {want.max_concurrency}"
    if bool(have.no_catchup) != want.no_catchup:
        return f"no_catchup {have.no_catchup} -> {want.no_catchup}"
    if have.fingerprint is None:
        return "not created by asdflow (no fingerprint)"
    return "parameters, service account or pipeline changed"
