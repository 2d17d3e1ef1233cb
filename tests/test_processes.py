"""asdflow.processes for real: a tiny `http.server` on 127.0.0.1 with a child in a session of its
own (as BentoML's workers are), started, waited for and stopped."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import requests

from asdflow.errors import AsdflowError
from asdflow.processes import descendants, free_port, running, stop, wait_ready


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's reaping is left


def _gone_within(pid: int, seconds: float = 10.0) -> bool:
    until = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > until:
            return False
        time.sleep(0.1)
    return True


def _server_argv(port: int) -> list[str]:
    # a child that leads a session of its own (not reached by signalling the server's group), then the server
    code = (
        "import runpy, subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
        f"sys.argv = ['http.server', '--bind', '127.0.0.1', '{port}']\n"
        "runpy.run_module('http.server', run_name='__main__')\n"
    )
    return [sys.executable, "-c", code]


def test_running_serves_then_stops_the_server_and_its_detached_child(tmp_path):
    port = free_port()
    (tmp_path / "hello.txt").write_text("hi")
    with running(_server_argv(port), cwd=tmp_path, log_path=tmp_path / "server.log") as process:
        url = f"http://127.0.0.1:{port}"
        seconds = wait_ready(url, process, deadline_s=30, path="/hello.txt")
        assert 0 <= seconds < 30
        assert requests.get(f"{url}/hello.txt", timeout=5).text == "hi"
        children = descendants(process.pid)
        assert len(children) == 1 and _alive(children[0])
    assert process.returncode is not None
    assert _gone_within(children[0])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/hello.txt", timeout=2)
    assert free_port(port) == port  # nothing listens there any more
    stop(process)  # a second stop is harmless


def test_running_stops_the_server_when_the_body_fails(tmp_path):
    port = free_port()
    with pytest.raises(RuntimeError, match="body failed"):
        with running(_server_argv(port), cwd=tmp_path, log_path=tmp_path / "server.log") as process:
            wait_ready(f"http://127.0.0.1:{port}", process, deadline_s=30, path="/")
            children = descendants(process.pid)
            raise RuntimeError("body failed")
    assert process.returncode is not None and _gone_within(children[0])


def test_wait_ready_fails_when_the_process_exits(tmp_path):
    log = tmp_path / "out.log"
    with running([sys.executable, "-c", "print('bye'); raise SystemExit(3)"], log_path=log) as process:
        with pytest.raises(AsdflowError, match="exited with code 3"):
            wait_ready(f"http://127.0.0.1:{free_port()}", process, deadline_s=30)
    assert log.read_text().strip() == "bye"


def test_wait_ready_fails_after_the_deadline(tmp_path):
    with running([sys.executable, "-c", "import time; time.sleep(60)"]) as process:
        started = time.monotonic()
        with pytest.raises(AsdflowError, match="within 1 s"):
            wait_ready(f"http://127.0.0.1:{free_port()}", process, deadline_s=1.0, interval_s=0.1)
        assert time.monotonic() - started < 10
    assert process.returncode is not None


def _open_handles(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


def test_running_closes_the_log_when_popen_fails(tmp_path):
    log = tmp_path / "log"
    with pytest.raises(OSError):
        with running([str(tmp_path / "no-such-program")], log_path=log):
            pytest.fail("the body must not run")
    assert log.exists() and _open_handles(log) == 0


def test_free_port_prefers_a_free_one_and_skips_a_taken_one():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert free_port(busy) != busy
    assert isinstance(free_port(), int)
