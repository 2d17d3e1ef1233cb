"""The main job on the embedded default (`make demo`), one machine, no GPU, no network.

synthesize two machine types -> version with DVC -> compile the KFP training
pipeline -> run it with kfp.local for each machine type (validate, train, score,
evaluate, register @challenger, gate against @champion, promote) -> serve the
champions with BentoML on 127.0.0.1 -> score one normal and one anomalous clip
over HTTP -> print the table -> stop the server.

Run again, it trains a new challenger on the same data version and the gate
shows the champion/challenger comparison. This is orchestration at the CLI's
level: KFP (`pipelines/`) is imported lazily and BentoML runs as a subprocess,
so the library itself stays free of both.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from asdflow.config import AsdflowConfig
from asdflow.errors import AsdflowError
from asdflow.processes import free_port, running, wait_ready

READY_DEADLINE_S = 180.0


class ServedScore(BaseModel):
    machine_type: str
    clip: str
    expected: str  # normal | anomaly
    score: float
    threshold: float
    decision: bool
    model_version: str


def score_over_http(url: str, clips: list[tuple[str, str, Path]]) -> list[ServedScore]:
    import requests

    results = []
    for machine, expected, path in clips:
        with open(path, "rb") as handle:
            reply = requests.post(f"{url}/score", files={"audio": (path.name, handle, "audio/wav")},
                                  data={"machine_type": machine}, timeout=60)
        if reply.status_code != 200:
            raise AsdflowError(f"POST {url}/score for {path.name} answered {reply.status_code}: {reply.text[:200]}")
        body = reply.json()
        results.append(ServedScore(machine_type=machine, clip=path.name, expected=expected, score=body["score"],
                                   threshold=body["threshold"], decision=body["is_anomalous"],
                                   model_version=str(body["model_version"])))
    return results


def pick_clips(data_dir: Path, machine_types: list[str]) -> list[tuple[str, str, Path]]:
    """The first source-domain normal and anomalous test clip of each machine type."""
    clips = []
    for machine in machine_types:
        for label in ("normal", "anomaly"):
            found = sorted((data_dir / machine / "test").glob(f"section_00_source_test_{label}_*.wav"))
            if not found:
                raise AsdflowError(f"no {label} test clip of {machine} under {data_dir}")
            clips.append((machine, label, found[0]))
    return clips


def run_demo(project: str | Path, config: AsdflowConfig, echo: Callable[[str], None] = print) -> dict:
    from asdflow.cli_pipeline import results_table
    from asdflow.cli_serve import serve_invocation
    from asdflow.data.synth import synthesize_dataset
    from asdflow.data.versioning import ensure_dvc_repo, version_data
    from asdflow.pipeline_ops import ensure_pipelines_importable, local_tracking_overrides
    from asdflow.registry.tracking import ui_hint

    started = time.perf_counter()
    project = Path(project).resolve()
    machines = config.serving.machine_types or config.synth.machine_types  # the demo generates what it serves
    config = config.model_copy(update={"synth": config.synth.model_copy(update={"machine_types": machines})})
    data_dir = project / config.data.data_dir
    work_dir = project / "runs" / "pipeline"

    echo(f"[1/6] synthesizing {', '.join(machines)} ({config.profile} profile) into {data_dir}")
    synthesize_dataset(config.synth, data_dir, progress=config.progress)

    echo("[2/6] versioning the data with DVC (local remote)")
    ensure_dvc_repo(project, config.data)
    version = version_data(project, config=config.data)
    echo(f"      data {version.md5} at revision {version.rev}, pushed to {version.remote_url}")

    echo("[3/6] compiling the training pipeline")
    ensure_pipelines_importable()
    from pipelines.compile import compile_pipeline
    from pipelines.local import run_locally
    from pipelines.training import build_training_pipeline

    package = compile_pipeline(build_training_pipeline(config), project / "runs" / "pipelines" / "asdflow-training.yaml")
    echo(f"      {package}")

    echo(f"[4/6] running it with kfp.local for {', '.join(machines)}: validate, train, score, evaluate, "
         "register, gate, promote")
    report = run_locally(config, machines, project, work_dir, version.rev)
    if report.failures:
        raise AsdflowError("; ".join(f"{m}: {why}" for m, why in report.failures.items()))

    tracking_uri = local_tracking_overrides(config, project)["tracking"]["tracking_uri"]
    port = free_port(config.serving.port)
    run = serve_invocation(config, host="127.0.0.1", port=port, tracking_uri=tracking_uri, project_dir=project)
    echo(f"[5/6] serving the champions with BentoML on {run.url}")
    log = work_dir / "bentoml-serve.log"
    # stopped however this ends, BentoML's workers included
    with running(run.argv, env={**os.environ, **run.env}, cwd=run.cwd, log_path=log) as process:
        try:
            # a BentoML service whose __init__ raises never exits, so the deadline decides
            wait_ready(run.url, process, READY_DEADLINE_S)
        except AsdflowError as err:
            raise AsdflowError(f"BentoML: {err}; see {log}") from None
        echo("[6/6] scoring one normal and one anomalous clip per machine type over HTTP")
        served = score_over_http(run.url, pick_clips(data_dir, machines))

    echo("")
    echo(results_table(report.results))
    echo("")
    for s in served:
        verdict = "anomalous" if s.decision else "normal"
        echo(f"POST /score {s.machine_type} {s.expected:7s} clip -> score {s.score:.3f} "
             f"(threshold {s.threshold:.3f}): {verdict}, model v{s.model_version}")
    seconds = time.perf_counter() - started
    echo("")
    echo(f"done in {seconds:.0f} s. MLflow UI: {ui_hint(config.tracking, project)}")
    echo("run `make demo` again to train a challenger and see the gate compare it with the champion")
    return {"seconds": seconds, "results": [r.model_dump() for r in report.results],
            "served": [s.model_dump() for s in served]}
