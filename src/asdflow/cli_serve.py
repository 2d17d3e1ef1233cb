"""`asdflow serve`: the BentoML detector service on this machine (127.0.0.1 unless told otherwise).

Mounted by asdflow.cli as `app.command("serve")(serve)`. It checks the config here, where
a mistake is one clear line, then replaces itself with

    bentoml serve serving.service:AnomalyDetector --host H --port P --working-dir <project root>

passing the config to the service through the environment (ASDFLOW_CONFIG, ASDFLOW_PROFILE,
MLFLOW_TRACKING_URI, ASDFLOW_PROJECT_DIR), so signals (Ctrl-C, a pod's SIGTERM) reach the
server directly. BentoML itself is not imported here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer

from asdflow.config import AsdflowConfig, load_config
from asdflow.errors import AsdflowError, ConfigError
from asdflow.telemetry import TELEMETRY_OFF

SERVICE_TARGET = "serving.service:AnomalyDetector"


@dataclass
class ServeInvocation:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the current environment
    cwd: Path = Path(".")
    url: str = ""


def find_service_root(start: Path | None = None) -> Path:
    """The folder holding serving/service.py: the working directory, else the project checkout."""
    candidates = []
    if os.environ.get("ASDFLOW_SERVICE_ROOT"):
        candidates.append(Path(os.environ["ASDFLOW_SERVICE_ROOT"]))
    candidates.append(start or Path.cwd())
    candidates.append(Path(__file__).resolve().parents[2])  # src/asdflow/cli_serve.py -> the checkout
    for root in candidates:
        if (root / "serving" / "service.py").is_file():
            return root.resolve()
    raise AsdflowError(
        f"cannot find serving/service.py in {', '.join(str(c) for c in candidates)}: "
        "run from the project root or set ASDFLOW_SERVICE_ROOT"
    )


def bentoml_executable() -> list[str]:
    """The bentoml of this interpreter's environment (not whatever is first on PATH)."""
    beside = Path(sys.executable).parent / "bentoml"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "bentoml"]


def serve_invocation(
    config: AsdflowConfig,
    config_path: str | Path | None = None,
    profile: str | None = None,
    host: str | None = None,
    port: int | None = None,
    tracking_uri: str | None = None,
    project_dir: str | Path | None = None,
    service_root: str | Path | None = None,
) -> ServeInvocation:
    """The command line and environment that start the server for `config` (host/port default to its serving section)."""
    host = host or config.serving.host
    port = int(port if port is not None else config.serving.port)
    root = Path(service_root).resolve() if service_root else find_service_root()
    # execve passes os.environ on, where `import asdflow` already switched telemetry off; the
    # copy here is for the `--print`ed command run in a bare shell (a user's own choice wins)
    env = {key: os.environ.get(key, value) for key, value in TELEMETRY_OFF.items()}
    if config_path is not None:
        env["ASDFLOW_CONFIG"] = str(Path(config_path).resolve())
    env["ASDFLOW_PROFILE"] = config.profile if profile is None else profile
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    # relative store paths (sqlite:///mlruns/mlflow.db) mean the same as for `asdflow models ...` run here
    env["ASDFLOW_PROJECT_DIR"] = str(Path(project_dir or os.environ.get("ASDFLOW_PROJECT_DIR") or Path.cwd()).resolve())
    argv = [*bentoml_executable(), "serve", SERVICE_TARGET, "--host", host, "--port", str(port),
            "--working-dir", str(root)]
    shown = f"[{host}]" if ":" in host else host
    return ServeInvocation(argv=argv, env=env, cwd=root, url=f"http://{shown}:{port}")


def serve(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (validated); merged over the profile."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="tiny | demo | full (default: the config's, else demo)."),
    host: Optional[str] = typer.Option(None, help="Interface to bind (default: serving.host, 127.0.0.1 = this machine only)."),
    port: Optional[int] = typer.Option(None, help="Port (default: serving.port)."),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store holding the champions (default: tracking.tracking_uri)."
    ),
    print_only: bool = typer.Option(False, "--print", help="Print the command instead of running it."),
):
    """Serve @champion of every machine type in the registry (or those `serving.machine_types` names) over HTTP (BentoML): /score, /score_batch, /readyz, /metrics."""
    overrides = {"tracking": {"tracking_uri": tracking_uri}} if tracking_uri else None
    cfg = load_config(config, profile, overrides)  # a bad config fails here, in one line
    run = serve_invocation(cfg, config, profile, host, port, tracking_uri)
    if print_only:
        exports = " ".join(f"{k}={v}" for k, v in run.env.items())
        typer.echo(f"cd {run.cwd} && {exports} {' '.join(run.argv)}")
        return
    served = ", ".join(cfg.serving.machine_types) if cfg.serving.machine_types else "every machine type"
    typer.echo(
        f"serving {served} (models:/{cfg.tracking.model_name_template}@champion) "
        f"on {run.url}; ready when {run.url}/readyz answers every champion loaded (a later one is picked up)",
        err=True,
    )
    ensure_port_free(cfg.serving.host if host is None else host,
                     int(port if port is not None else cfg.serving.port))
    os.chdir(run.cwd)
    os.execve(run.argv[0], run.argv, {**os.environ, **run.env})


def ensure_port_free(host: str, port: int) -> None:
    """Refuse, in one line, to start on a port something already answers on (BentoML would fail deep
    in its process manager; after a kill -9 it is often an earlier server's worker still serving)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(
                f"cannot serve on {host}:{port}: {err.strerror or err}. Another process holds it (an earlier "
                f"`asdflow serve` whose worker outlived it? see `ss -ltnp 'sport = :{port}'`); stop it or pass --port"
            ) from None
