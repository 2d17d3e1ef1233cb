"""A small Kubeflow Pipelines API server on 127.0.0.1 that records the calls it gets.

It implements just the v2beta1 REST endpoints `asdflow pipeline submit|schedule`
reach through `kfp.Client` (healthz, experiments, runs, recurring runs), keeps
their state in memory, and pages recurring-run listings at `page_cap` items so
the client's pagination is exercised. Field names are the API's own (snake_case,
and `recurringRuns` in the listing, as the real server sends it).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

API = "/apis/v2beta1"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any

    @property
    def mutating(self) -> bool:
        return self.method in ("POST", "DELETE", "PUT", "PATCH")


@dataclass
class FakeKfp:
    page_cap: int = 2
    calls: list[Call] = field(default_factory=list)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring: dict[str, dict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def seed_recurring_run(self, experiment_id: str, name: str, cron: str = "0 0 1 * * *", **extra: Any) -> str:
        run_id = uuid.uuid4().hex
        self.recurring[run_id] = {
            "recurring_run_id": run_id, "display_name": name, "experiment_id": experiment_id, "mode": "ENABLE",
            "trigger": {"cron_schedule": {"cron": cron}}, "max_concurrency": "1", "no_catchup": True, **extra,
        }
        return run_id

    def seed_experiment(self, name: str) -> str:
        experiment_id = uuid.uuid4().hex
        self.experiments[experiment_id] = {"experiment_id": experiment_id, "display_name": name, "namespace": ""}
        return experiment_id

    def mutations(self) -> list[Call]:
        return [c for c in self.calls if c.mutating]

    def forget_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def by_name(self) -> dict[str, dict]:
        return {r["display_name"]: r for r in self.recurring.values()}

    # -- request handling -------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        parsed = urlparse(raw_path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        path = parsed.path
        with self.lock:
            self.calls.append(Call(method, path, query, body))
            if not path.startswith(API):
                return 404, {"error": f"unknown path {path}"}
            route = path[len(API):]
            if method == "GET" and route == "/healthz":
                return 200, {"multi_user": False, "pipeline_store": "database"}
            if route == "/experiments":
                return self._experiments(method, query, body)
            if method == "POST" and route == "/runs":
                return self._create_run(body)
            if route == "/recurringruns":
                return self._recurring(method, query, body)
            if route.startswith("/recurringruns/"):
                return self._one_recurring(method, route[len("/recurringruns/"):])
            return 404, {"error": f"no route {method} {path}"}

    def _experiments(self, method: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if method == "POST":
            experiment_id = uuid.uuid4().hex
            self.experiments[experiment_id] = {"experiment_id": experiment_id, "display_name": body["display_name"],
                                               "namespace": body.get("namespace") or ""}
            return 200, self.experiments[experiment_id]
        found = list(self.experiments.values())
        if "filter" in query:
            for predicate in json.loads(query["filter"])["predicates"]:
                assert predicate["key"] == "display_name", predicate
                found = [e for e in found if e["display_name"] == predicate["stringValue"]]
        return 200, {"experiments": found, "total_size": len(found)} if found else {}

    def _create_run(self, body: dict) -> tuple[int, Any]:
        if body.get("experiment_id") not in self.experiments:
            return 400, {"error": f"no experiment {body.get('experiment_id')}"}
        run_id = uuid.uuid4().hex
        self.runs[run_id] = {**body, "run_id": run_id, "state": "PENDING"}
        return 200, {k: v for k, v in self.runs[run_id].items() if k != "pipeline_spec"}

    def _recurring(self, method: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if method == "POST":
            if body.get("experiment_id") not in self.experiments:
                return 400, {"error": f"no experiment {body.get('experiment_id')}"}
            run_id = uuid.uuid4().hex
            stored = {**body, "recurring_run_id": run_id}
            stored["max_concurrency"] = str(stored.get("max_concurrency", "1"))  # int64: a string in JSON
            self.recurring[run_id] = stored
            return 200, {k: v for k, v in stored.items() if k != "pipeline_spec"}
        found = [r for r in self.recurring.values()
                 if "experiment_id" not in query or r.get("experiment_id") == query["experiment_id"]]
        found.sort(key=lambda r: r["recurring_run_id"])
        start = int(query.get("page_token") or 0)
        size = min(int(query.get("page_size") or self.page_cap), self.page_cap)
        page = found[start:start + size]
        answer: dict[str, Any] = {"recurringRuns": [{k: v for k, v in r.items() if k != "pipeline_spec"} for r in page],
                                  "total_size": len(found)}
        if start + size < len(found):
            answer["next_page_token"] = str(start + size)
        return 200, answer

    def _one_recurring(self, method: str, rest: str) -> tuple[int, Any]:
        run_id, _, verb = rest.partition(":")
        if run_id not in self.recurring:
            return 404, {"error": f"no recurring run {run_id}"}
        if method == "DELETE" and not verb:
            del self.recurring[run_id]
            return 200, {}
        if method == "POST" and verb in ("enable", "disable"):
            self.recurring[run_id]["mode"] = verb.upper()
            return 200, {}
        if method == "GET" and not verb:
            return 200, self.recurring[run_id]
        return 404, {"error": f"no route {method} {rest}"}


def _handler(state: FakeKfp):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, payload = state.handle(method, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._serve("GET")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

        def do_DELETE(self):  # noqa: N802
            self._serve("DELETE")

        def log_message(self, *args):  # quiet test output
            pass

    return Handler


@pytest.fixture
def kfp_server():
    """A fresh fake KFP API on 127.0.0.1 (a free port), served from a thread for one test."""
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
