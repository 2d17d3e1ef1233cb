"""Server subprocesses (BentoML, MLflow, test servers): start, wait until ready, stop for good.

A server is started in a session of its own (`start_new_session=True`), so stopping it
signals the whole process group it leads. BentoML's workers lead process groups of their
own, so they are found beforehand (psutil when installed, else /proc) and killed by pid too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from asdflow.errors import AsdflowError

STOP_GRACE_S = 20.0  # SIGTERM to exit, before SIGKILL
KILL_WAIT_S = 10.0


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens there on 127.0.0.1, else a port the OS says is free."""
    if preferred is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (children, grandchildren, ...)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            children = [int(c) for c in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except (OSError, ValueError):
            children = []
        found += children
        stack += children
    return found


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/<pid>/stat): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def stop(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group `process` leads, SIGKILL it after `grace_s`; then SIGKILL any
    descendant still alive (workers in process groups of their own). Safe to call twice."""
    workers = {pid: _start_time(pid) for pid in descendants(process.pid)}
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:  # not a group leader (started without a new session): the process alone
            try:
                os.kill(process.pid, sig)
            except ProcessLookupError:
                break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for pid, started in workers.items():  # only what is still the same process: a pid may have been reused
        if started is None or _start_time(pid) != started:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_ready(url: str, process: subprocess.Popen, deadline_s: float, path: str = "/readyz",
               interval_s: float = 0.5) -> float:
    """Poll GET url+path until it answers 200; returns the seconds it took.

    Raises AsdflowError when the process exits first or the deadline passes (a BentoML
    service whose __init__ raises never exits, so the deadline decides).
    """
    import requests

    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise AsdflowError(f"the server for {url} exited with code {process.returncode} before it was ready")
        try:
            if requests.get(url + path, timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        if time.monotonic() - started > deadline_s:
            raise AsdflowError(f"the server at {url} did not answer {path} within {deadline_s:.0f} s")
        time.sleep(interval_s)


@contextmanager
def running(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
            log_path: str | Path | None = None) -> Iterator[subprocess.Popen]:
    """Start `argv` in a session of its own, output to `log_path` (else discarded); stopped on exit.

    The process is stopped and the log closed however the body ends, and the log is closed
    when Popen itself fails.
    """
    log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env) if env is not None else None,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            yield process
        finally:
            stop(process)
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
