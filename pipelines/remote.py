"""Kubeflow Pipelines on a cluster: submit a run, reconcile the recurring retraining runs.

Both go through `kfp.Client` (the KFP v2beta1 REST API). The compiled package is
sent inline with each run and recurring run, so what runs is exactly what was
compiled here; the service account is set per run (ClusterConfig.service_account).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from asdflow.errors import AsdflowError
from asdflow.pipeline_ops import (
    DesiredRecurringRun,
    ExistingRecurringRun,
    SchedulePlan,
    desired_recurring_runs,
    plan_schedules,
)
from asdflow.schedules import RecurringSchedules
from pipelines.compile import package_digest

PAGE_SIZE = 100
MAX_PAGES = 1000  # a bound on listing, whatever the server answers


class PipelineServerError(AsdflowError):
    """The Kubeflow Pipelines server could not be reached or refused a request."""


class SubmittedRun(BaseModel):
    run_id: str
    experiment_id: str
    name: str
    host: str


@contextlib.contextmanager
def _server_errors(host: str, what: str) -> Iterator[None]:
    """KFP's client errors (HTTP status, refused connection...) as one line naming the server."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as err:
        reason = (err.body or err.reason or "").strip().splitlines()
        raise PipelineServerError(
            f"{what}: Kubeflow Pipelines at {host} answered {err.status}: {reason[0][:300] if reason else ''}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as err:
        raise PipelineServerError(f"{what}: cannot reach Kubeflow Pipelines at {host}: {type(err).__name__}") from None


def connect(host: str, namespace: str | None = None, token: str | None = None):
    """A `kfp.Client` on `host` (http[s]://...; `token`: a bearer token for an authenticated endpoint)."""
    import kfp

    if not host.startswith(("http://", "https://")):
        raise PipelineServerError(f"--host {host!r}: give the KFP API endpoint as http://... or https://...")
    with warnings.catch_warnings(), _server_errors(host, "connecting"):
        warnings.filterwarnings("ignore", category=FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)


def submit_run(
    host: str,
    package_path: str | Path,
    arguments: Mapping[str, Any],
    *,
    experiment: str,
    run_name: str,
    service_account: str | None,
    namespace: str | None = None,
    token: str | None = None,
) -> SubmittedRun:
    """Create (or reuse) the experiment and start one run of the compiled package."""
    client = connect(host, namespace, token)
    with _server_errors(host, f"submitting {run_name}"):
        result = client.create_run_from_pipeline_package(
            str(package_path), arguments=dict(arguments), run_name=run_name, experiment_name=experiment,
            namespace=namespace, service_account=service_account or None,
        )
    return SubmittedRun(run_id=result.run_id, experiment_id=result.run_info.experiment_id or "", name=run_name,
                        host=host)


def _experiment_id(client, experiment: str, namespace: str | None, create: bool) -> str | None:
    try:
        return client.get_experiment(experiment_name=experiment, namespace=namespace).experiment_id
    except ValueError as err:
        if not str(err).startswith("No experiment is found"):
            raise PipelineServerError(f"experiment {experiment!r}: {err}") from None
    return client.create_experiment(experiment, namespace=namespace).experiment_id if create else None


def list_recurring_runs(client, experiment_id: str) -> list[ExistingRecurringRun]:
    """Every recurring run of the experiment (all pages)."""
    found: list[ExistingRecurringRun] = []
    token = ""
    for _ in range(MAX_PAGES):
        page = client.list_recurring_runs(page_token=token, page_size=PAGE_SIZE, experiment_id=experiment_id)
        for run in page.recurring_runs or []:
            cron = run.trigger.cron_schedule.cron if run.trigger and run.trigger.cron_schedule else None
            found.append(ExistingRecurringRun(
                id=run.recurring_run_id, name=run.display_name or "", description=run.description or "",
                cron=" ".join(cron.split()) if cron else None,
                max_concurrency=int(run.max_concurrency) if run.max_concurrency not in (None, "") else None,
                no_catchup=run.no_catchup, enabled=run.mode == "ENABLE",
            ))
        token = page.next_page_token or ""
        if not token:
            break
    return found


def _create(client, experiment_id: str, want: DesiredRecurringRun, package_path: Path) -> None:
    client.create_recurring_run(
        experiment_id=experiment_id, job_name=want.name, description=want.description(),
        cron_expression=want.cron, max_concurrency=want.max_concurrency, no_catchup=want.no_catchup,
        params=dict(want.parameters), pipeline_package_path=str(package_path), enabled=True,
        service_account=want.service_account,
    )


def reconcile_schedules(
    host: str,
    package_path: str | Path,
    schedules: RecurringSchedules,
    base_arguments: Mapping[str, Any],
    *,
    experiment: str,
    service_account: str | None,
    apply: bool = False,
    namespace: str | None = None,
    token: str | None = None,
) -> SchedulePlan:
    """Make the server's recurring runs (in `experiment`) match `schedules` (asdflow.schedules.RecurringSchedules).

    Without `apply` only the plan is returned (nothing is created, not even the
    experiment). With it, every action is carried out; running it again then
    plans only "keep" (and "absent" for disabled schedules never created).
    """
    package_path = Path(package_path)
    desired = desired_recurring_runs(schedules, base_arguments, package_digest(package_path), service_account)
    client = connect(host, namespace, token)
    with _server_errors(host, "reconciling the recurring runs"):
        experiment_id = _experiment_id(client, experiment, namespace, create=apply)
        existing = list_recurring_runs(client, experiment_id) if experiment_id else []
        # narrowed to some machine types (--machine-type): the others' runs are not ours to delete
        plan = plan_schedules(desired, existing, delete_unlisted=not schedules.narrowed)
        if not apply:
            return plan
        for action in plan.actions:
            if action.action in ("delete", "recreate"):
                client.delete_recurring_run(action.existing_id)
            if action.action in ("create", "recreate"):
                _create(client, experiment_id, action.desired, package_path)
            elif action.action == "enable":
                client.enable_recurring_run(action.existing_id)
            elif action.action == "disable":
                client.disable_recurring_run(action.existing_id)
    return plan
