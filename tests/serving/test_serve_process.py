"""`asdflow serve` as a process: it refuses a port something already holds, in one line, and its worker
does not outlive a kill -9 of the server (the orphan that used to keep answering on the port)."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
import requests
import yaml

from asdflow.errors import ConfigError
from asdflow.processes import running

from tests.serving.test_service_http import REPO_ROOT, START_DEADLINE_S, _poll, serve_command

pytestmark = pytest.mark.slow


def test_a_held_port_is_refused_in_one_line():
    from asdflow.cli_serve import ensure_port_free

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve on 127.0.0.1:{port}: .*Another process holds it"):
            ensure_port_free("127.0.0.1", port)
    ensure_port_free("127.0.0.1", port)  # free again


def _port_closed(url: str) -> bool:
    try:
        requests.get(f"{url}/livez", timeout=1)
    except requests.ConnectionError:
        return True
    return False


def test_the_worker_dies_with_a_killed_server(tmp_path):
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(yaml.safe_dump({"profile": "tiny", "tracking": {
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_location": str(tmp_path / "a")}}))
    argv, env, url = serve_command(config_file)
    with running(argv, env=env, cwd=REPO_ROOT, log_path=tmp_path / "server.log") as process:
        _poll(lambda: requests.get(f"{url}/livez", timeout=5).status_code == 200, START_DEADLINE_S, "livez",
              process, tmp_path / "server.log")
        os.kill(process.pid, signal.SIGKILL)  # the server, not its process group: the worker must follow alone
        deadline = time.monotonic() + 30
        while not _port_closed(url):
            assert time.monotonic() < deadline, "a worker still answers after the server was killed"
            time.sleep(0.5)
