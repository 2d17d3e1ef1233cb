"""Load shedding answered in the service's own shape: the middleware and the log filter of serving/service.py
around a plain Starlette app that sheds load the way BentoML's batcher does (a bare 503)."""

from __future__ import annotations

import logging
import sys

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient


def _client():
    from serving.service import OverloadMiddleware, Refusal

    async def shed(request):
        return JSONResponse({"error": "An unexpected error has occurred, please check the server log."}, 503)

    async def not_loaded(request):
        return Refusal(503, "model_not_loaded", "no model for fan loaded yet").response()

    async def not_ready(request):
        return PlainTextResponse("Runners are not ready.", 503)

    app = Starlette(routes=[Route("/score_batch", shed, methods=["POST"]), Route("/score", not_loaded, methods=["POST"]),
                            Route("/readyz", not_ready)])
    return TestClient(OverloadMiddleware(app))


def test_a_shed_batch_gets_our_json_and_retry_after():
    answer = _client().post("/score_batch", json={"clips": []})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.json() == {"error": "the server is busy (/score_batch): retry after 1 s", "reason": "overloaded",
                             "status": 503}


def test_our_own_503s_and_readiness_pass_unchanged():
    client = _client()
    assert client.post("/score").json()["reason"] == "model_not_loaded"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.text == "Runners are not ready."


def test_a_shed_request_is_logged_in_one_line():
    from bentoml.exceptions import ServiceUnavailable

    from serving.service import _OneLineOverload

    try:
        raise ServiceUnavailable("process is overloaded")
    except ServiceUnavailable:
        record = logging.LogRecord("bentoml._internal.server.http_app", logging.ERROR, __file__, 1,
                                   "Exception on %s [%s]", ("/score_batch", "POST"), sys.exc_info())
    assert _OneLineOverload().filter(record) and record.exc_info is None
    assert record.getMessage() == "shed load: Exception on /score_batch [POST] (answered 503 with Retry-After)"


def test_a_refused_malformed_body_is_logged_in_one_line():
    from serving.service import _OneLineOverload, _invalid_body

    try:
        raise _invalid_body("duplicate_audio", "two `audio` parts: send one clip per /score request")
    except Exception:  # noqa: BLE001 - the pydantic ValidationError BentoML answers with 400
        record = logging.LogRecord("bentoml._internal.server.http_app", logging.ERROR, __file__, 1,
                                   "Exception on %s [%s]", ("/score", "POST"), sys.exc_info())
    assert _OneLineOverload().filter(record) and record.exc_info is None
    assert "two `audio` parts" in record.getMessage() and record.getMessage().startswith("refused a malformed body")
