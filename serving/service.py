"""The BentoML detector service: scores clips with the promoted champion of each machine type.

    bentoml serve serving.service:AnomalyDetector --host 127.0.0.1 --port 3000
    (or `asdflow serve`, which runs exactly that from the project root)

Endpoints
- POST /score        one clip: a multipart upload (`audio` file + `machine_type` field) or
                     JSON {"machine_type", "waveform": [floats], "sample_rate"} or
                     {"machine_type", "audio_base64"}; optional `domain`, `section`, `attributes`
                     (read from the upload's DCASE file name when absent) condition a family
                     that uses them (conditional_ae); returns score, threshold, decision,
                     model version and notes on what was done to the clip (stereo mixed
                     down, resampled).
- POST /score_batch  JSON {"clips": [{"machine_type", "waveform" | "audio_base64", ...}]},
                     adaptive batching across concurrent requests; one result per clip, a
                     refused clip gets its error and status in its own entry (the others are
                     still scored).
- GET  /models       which version of each machine type is loaded, and any load problem.
- GET  /livez, /readyz (true only once every champion is loaded and warmed), /metrics
  (Prometheus; `asdflow_anomaly_score` is a histogram of scores per machine type).

Bad input is a 4xx with a JSON body {"error": <what and why>, "reason": <code>, "status"}:
not audio 415, truncated/corrupt/empty 400, too short / NaN-inf / bad sample rate 422,
too long or too large 413, unknown machine type 404; a machine type whose champion is
not loaded yet is a 503.

Configuration (read once at import): `asdflow.config.load_config(ASDFLOW_CONFIG,
ASDFLOW_PROFILE)`; `MLFLOW_TRACKING_URI` overrides `tracking.tracking_uri`; relative
store paths resolve against `ASDFLOW_PROJECT_DIR` (default: the working directory).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from http import HTTPStatus
from pathlib import Path
from typing import Any, Optional

import bentoml
import numpy as np
from _bentoml_sdk.io_models import IODescriptor  # the input-spec base class (no public alias in 1.4)
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, Field
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse
from starlette.routing import Route

from asdflow.config import AsdflowConfig, load_config
from asdflow.errors import AsdflowError
from asdflow.serving_io import (
    BadSampleRateError,
    BadWaveformError,
    CorruptAudioError,
    DecodedClip,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    TooLargeError,
    TooLongError,
    TooShortError,
    TruncatedAudioError,
    UploadError,
    decode_samples,
    decode_upload,
)

from serving.champions import REGISTRY_DEADLINES, ChampionStore, LoadedChampion

log = logging.getLogger("asdflow.serving")

SERVICE_NAME = "asdflow_detector"
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and fields around the uploaded file

# What each refusal becomes over HTTP.
STATUS_BY_ERROR: dict[type[UploadError], int] = {
    NotAudioError: 415,
    TruncatedAudioError: 400,
    CorruptAudioError: 400,
    EmptyAudioError: 400,
    BadWaveformError: 400,
    TooShortError: 422,
    NonFiniteAudioError: 422,
    BadSampleRateError: 422,
    TooLongError: 413,
    TooLargeError: 413,
}


def server_config() -> AsdflowConfig:
    """The asdflow config the server runs with (env: ASDFLOW_CONFIG, ASDFLOW_PROFILE, MLFLOW_TRACKING_URI)."""
    overrides: dict[str, Any] = {"progress": False}
    if os.environ.get("MLFLOW_TRACKING_URI"):
        overrides["tracking"] = {"tracking_uri": os.environ["MLFLOW_TRACKING_URI"]}
    return load_config(os.environ.get("ASDFLOW_CONFIG") or None, os.environ.get("ASDFLOW_PROFILE") or None, overrides)


CONFIG = server_config()
SERVING = CONFIG.serving

# -- metrics (module level: BentoML's Prometheus registry is multi-process) -----------------

SCORE_BUCKETS = [float(f"{b:.3g}") for b in np.geomspace(1e-3, 1e4, 29)]
SCORES = bentoml.metrics.Histogram(
    name="asdflow_anomaly_score",
    documentation="Anomaly scores returned, per machine type (higher = more anomalous)",
    labelnames=["machine_type"],
    buckets=SCORE_BUCKETS,
)
CLIPS = bentoml.metrics.Counter(
    name="asdflow_scored_clips",
    documentation="Clips scored, per machine type and decision",
    labelnames=["machine_type", "decision"],
)
REFUSED = bentoml.metrics.Counter(
    name="asdflow_refused_clips",
    documentation="Clips refused, per reason",
    labelnames=["reason"],
)
CHAMPION_VERSION = bentoml.metrics.Gauge(
    name="asdflow_champion_version",
    documentation="Registered model version being served, per machine type",
    labelnames=["machine_type"],
    multiprocess_mode="livemax",
)
CHAMPION_FALLBACK = bentoml.metrics.Gauge(
    name="asdflow_champion_fallback",
    documentation="1 when the champion failed to load and an earlier champion is served instead, per machine type",
    labelnames=["machine_type"],
    multiprocess_mode="livemax",
)
REGISTRY_UP = bentoml.metrics.Gauge(
    name="asdflow_registry_up",
    documentation="1 when the last reload pass could read the model registry, else 0",
    multiprocess_mode="livemin",
)
REGISTRY_OK_AT = bentoml.metrics.Gauge(
    name="asdflow_registry_last_ok_timestamp_seconds",
    documentation="When a reload pass last read the model registry (alert on its age)",
    multiprocess_mode="livemin",
)


# -- request and response bodies ------------------------------------------------------------


class ScoreResult(BaseModel):
    machine_type: str
    model_name: str
    model_version: str
    score: float
    threshold: float
    decision: str  # "anomalous" | "normal"
    is_anomalous: bool
    duration_s: float  # of the clip as scored
    sample_rate: int  # the rate it was scored at
    notes: list[str] = Field(default_factory=list)  # what was done to the clip before scoring


# Optional[...] rather than "X | None": BentoML 1.4 patches typing.Union annotations only.
class ScoreInput(IODescriptor):
    """POST /score: multipart (`audio` file part + `machine_type` field) or JSON."""

    machine_type: str
    audio: Optional[bytes] = None  # multipart: the uploaded audio file (wav, flac...)
    audio_base64: Optional[str] = None  # JSON: an audio file, base64-encoded
    waveform: Optional[list[float]] = None  # JSON: mono samples in [-1, 1]
    sample_rate: Optional[int] = None  # of `waveform` (default: the detector's)
    # the clip's conditions, for a family that conditions on them (conditional_ae); from the
    # uploaded file's DCASE name when not given
    domain: Optional[str] = None  # source | target
    section: Optional[str] = None  # "00"
    attributes: Optional[dict[str, str]] = None  # multipart: a JSON object as text
    filename: Optional[str] = None  # the upload's file name (multipart sets it)

    @classmethod
    async def from_http_request(cls, request, serde) -> "ScoreInput":
        # Parsed here, not by BentoML's multipart serde: that one fetches any URL given as a
        # file field and answers a malformed form with a 500; here both are a 4xx.
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            return await _parse_off_the_loop(cls, await request.body())
        try:
            form = await request.form(max_files=2, max_fields=16)
        except Exception as err:  # starlette raises several kinds for a broken body
            raise _invalid_body("form_invalid", f"malformed form body: {getattr(err, 'detail', err)}") from None
        data: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "audio":
                    raise _invalid_body("unexpected_file", f"unexpected file part {key[:64]!r}: send the clip as `audio`")
                if "audio" in data:  # two clips in one /score: which one was scored would be a guess
                    raise _invalid_body("duplicate_audio", "two `audio` parts: send one clip per /score request")
                data["audio"] = await value.read()
                data.setdefault("filename", value.filename)
            elif key in ("waveform", "attributes"):
                try:
                    data[key] = json.loads(value)
                except ValueError:
                    what = "a JSON array" if key == "waveform" else "a JSON object"
                    raise _invalid_body(f"{key}_invalid", f"`{key}` form field is not {what}") from None
            else:
                data[key] = value
        return cls.model_validate(data)


class BatchClip(BaseModel):
    machine_type: str
    waveform: Optional[list[float]] = None  # mono samples in [-1, 1]
    sample_rate: Optional[int] = None  # of `waveform` (default: the detector's)
    audio_base64: Optional[str] = None  # or: an audio file (wav, flac), base64-encoded
    id: Optional[str] = None  # echoed back
    domain: Optional[str] = None  # the clip's conditions, as for /score
    section: Optional[str] = None
    attributes: Optional[dict[str, str]] = None
    filename: Optional[str] = None  # a DCASE file name the conditions are read from when not given


class BatchInput(IODescriptor):
    """POST /score_batch: JSON {"clips": [...]} only."""

    clips: list[BatchClip]

    @classmethod
    async def from_http_request(cls, request, serde) -> "BatchInput":
        media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media != "application/json":
            raise _invalid_body("content_type", f"send application/json, not {media}")
        return await _parse_off_the_loop(cls, await request.body())


async def _parse_off_the_loop(model, body: bytes):
    """JSON parsed and validated on a worker thread: a large body (up to the request cap) must not stall
    /livez and every other request on the event loop meanwhile."""
    import anyio

    return await anyio.to_thread.run_sync(model.model_validate_json, body or b"{}")


def _invalid_body(kind: str, message: str) -> ValidationError:
    """A 400 in BentoML's own shape for malformed input: {"error", "detail": [{"type", "loc", "msg"}]}."""
    error = PydanticCustomError(kind, "{detail}", {"detail": message})
    return ValidationError.from_exception_data("Input", [InitErrorDetails(type=error, loc=("body",), input=None)])


class BatchResult(BaseModel):
    id: str | None = None
    ok: bool
    status: int  # the HTTP status this clip alone would have got
    result: ScoreResult | None = None
    error: str | None = None
    reason: str | None = None


class Refusal(Exception):
    """A request the server will not score, with its HTTP status and reason code."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    @classmethod
    def from_upload_error(cls, err: UploadError) -> "Refusal":
        return cls(STATUS_BY_ERROR.get(type(err), 400), err.reason, str(err))

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, "reason": self.reason, "status": self.status},
                            status_code=self.status, headers={"X-Asdflow-Refusal": self.reason})


# -- body size guard -------------------------------------------------------------------------


class RequestTooLarge(BentoMLException):
    """A chunked body grew past the limit while being read (no Content-Length to refuse it up front)."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BodyLimitMiddleware:
    """Refuses a request body above the limit with 413 before the framework buffers it.

    Multipart uploads are held to the upload cap (plus form overhead), JSON bodies to
    `max_request_bytes`. An announced oversized body is drained (up to `drain_cap`)
    before the 413, so the client reads the answer instead of a reset connection.
    """

    def __init__(self, app, max_request_bytes: int, max_upload_bytes: int, drain_cap: int = 256 * 1024 * 1024):
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes
        self.drain_cap = drain_cap

    def _limit(self, scope) -> int:
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if content_type.startswith("multipart/"):
            return min(self.max_request_bytes, self.max_upload_bytes + MULTIPART_OVERHEAD)
        return self.max_request_bytes

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self._limit(scope)
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"-1"))
        except ValueError:
            declared = -1
        if declared > limit:
            if declared <= self.drain_cap:
                while (message := await receive()).get("more_body", False) and message["type"] == "http.request":
                    pass
            REFUSED.labels(reason=TooLargeError.reason).inc()
            body = {"error": f"request body of {declared} bytes is above the limit of {limit} bytes",
                    "reason": TooLargeError.reason, "status": 413}
            return await JSONResponse(body, status_code=413)(scope, receive, send)

        seen = 0
        tripped = False

        async def counting_receive():
            nonlocal seen, tripped
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    tripped = True
                    REFUSED.labels(reason=TooLargeError.reason).inc()
                    raise RequestTooLarge(f"request body above the limit of {limit} bytes")
            return message

        async def guarded_send(message):
            # the framework answers the exception above in its own shape; answer in ours instead
            if not tripped:
                return await send(message)
            if message["type"] == "http.response.start":
                body = {"error": f"request body above the limit of {limit} bytes",
                        "reason": TooLargeError.reason, "status": 413}
                response = JSONResponse(body, status_code=413)
                await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": response.body, "more_body": False})

        return await self.app(scope, counting_receive, guarded_send)


# -- readiness per machine type ----------------------------------------------------------------


class ReadinessMiddleware:
    """GET /readyz answers which machine types are loaded (the aggregate status for the Kubernetes
    probe, as before); GET /readyz?machine_type=fan answers for that one alone, so one broken machine
    type need not take the healthy ones out of a router's rotation."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("path") != "/readyz" or scope.get("method") != "GET":
            return await self.app(scope, receive, send)
        service = bentoml.get_current_service()
        if service is None:
            return await self.app(scope, receive, send)
        from urllib.parse import parse_qs

        by_type = service.store.ready_by_machine_type()
        wanted = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("machine_type")
        if wanted:
            machine_type = wanted[0][:64]
            if machine_type not in by_type:
                body, status = {"error": f"unknown machine type {machine_type!r}", "reason": "unknown_machine_type",
                                "status": 404}, 404
            else:
                body = {"machine_type": machine_type, "ready": by_type[machine_type]}
                status = 200 if by_type[machine_type] else 503
        else:
            ready = service.store.ready()
            body, status = {"ready": ready, "machine_types": by_type}, 200 if ready else 503
        return await JSONResponse(body, status_code=status)(scope, receive, send)


# -- load shedding ---------------------------------------------------------------------------

RETRY_AFTER_S = 1
SCORING_PATHS = frozenset({"/score", "/score_batch"})


class OverloadMiddleware:
    """/score_batch's adaptive batcher sheds load with a bare 503 and a traceback per request; answer it
    in the service's own shape, with `Retry-After`, and log one line (`_OneLineOverload`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("path") not in SCORING_PATHS:  # /readyz's 503 means not ready
            return await self.app(scope, receive, send)
        replaced = False

        async def guarded_send(message):
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 503 and not _ours(message):
                replaced = True
                REFUSED.labels(reason="overloaded").inc()
                body = {"error": f"the server is busy ({scope.get('path')}): retry after {RETRY_AFTER_S} s",
                        "reason": "overloaded", "status": 503}
                response = JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
                await send({"type": "http.response.start", "status": 503, "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": response.body, "more_body": False})
                return
            if replaced:  # the framework's own body of that 503: already answered
                return
            await send(message)

        return await self.app(scope, receive, guarded_send)


def _ours(message) -> bool:
    """A 503 the service itself answered (model_not_loaded), whose body already has our shape."""
    return any(k.lower() == b"x-asdflow-refusal" for k, _ in message.get("headers", []))


class _OneLineOverload(logging.Filter):
    """BentoML logs each shed request, and each malformed body it answers with 400, with a ~30-line
    traceback (8.5 MB under a burst); one line says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bentoml.exceptions import ServiceUnavailable

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ServiceUnavailable):
            record.msg, record.args = "shed load: %s (answered 503 with Retry-After)", (record.getMessage(),)
            record.exc_info, record.exc_text = None, None
        elif isinstance(error, ValidationError):  # a request body refused with 400: the client's problem
            detail = "; ".join(e.get("msg", "") for e in error.errors())[:300]
            record.msg, record.args = "refused a malformed body: %s (%s)", (record.getMessage(), detail)
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(_OneLineOverload())


# -- the service -----------------------------------------------------------------------------


@bentoml.service(
    name=SERVICE_NAME,
    workers=SERVING.workers,
    threads=SERVING.threads,
    traffic={"timeout": SERVING.timeout_s},
    # what `bentoml serve` binds without --host: the config's (127.0.0.1), not every interface
    http={"host": SERVING.host, "port": SERVING.port},
)
class AnomalyDetector:
    def __init__(self) -> None:
        import torch

        # Each worker runs `threads` request threads scoring at once; torch's intra-op pool is
        # process-wide, so one thread per op keeps them from oversubscribing the cores (set once
        # here, not per call: asdflow.torch_threads skips a count that is already right).
        torch.set_num_threads(1)
        _die_with_parent()
        # a registry server that is down must not hold a reload pass in MLflow's retries for a minute
        for key, value in REGISTRY_DEADLINES.items():
            os.environ.setdefault(key, value)
        self.config = CONFIG
        project_dir = os.environ.get("ASDFLOW_PROJECT_DIR") or Path.cwd()
        self.store = ChampionStore(CONFIG, project_dir, on_swap=_publish_version,
                                   on_registry_check=self._after_reload_pass)
        # models load on a background thread: /livez answers at once, /readyz once all are warm
        self.store.start()

    def __is_ready__(self) -> bool:
        return self.store.ready()

    def _after_reload_pass(self, registry_ok: bool, ok_at: float | None) -> None:
        _publish_registry_health(registry_ok, ok_at)
        for machine_type, entry in self.store.status()["models"].items():
            CHAMPION_FALLBACK.labels(machine_type=machine_type).set(1.0 if entry["fallback_from"] else 0.0)

    @bentoml.on_shutdown
    def _stop_reloading(self) -> None:
        self.store.stop()

    # -- one clip ------------------------------------------------------------------------
    @bentoml.api(route="/score", input_spec=ScoreInput)
    def score(
        self,
        machine_type: str,
        audio: Optional[bytes] = None,
        audio_base64: Optional[str] = None,
        waveform: Optional[list[float]] = None,
        sample_rate: Optional[int] = None,
        domain: Optional[str] = None,
        section: Optional[str] = None,
        attributes: Optional[dict[str, str]] = None,
        filename: Optional[str] = None,
    ) -> ScoreResult:
        """Score one clip: an uploaded audio file (`audio`), or JSON with `waveform` (+ `sample_rate`) or
        `audio_base64`; `domain`, `section`, `attributes` (or a DCASE file name) condition a family that uses them."""
        try:
            champion = self._champion(machine_type)
            clip = _decode(champion, audio, audio_base64, waveform, sample_rate, "uploaded audio")
            record = clip_record(machine_type, domain, section, attributes, filename)
        except UploadError as err:
            return self._refuse(Refusal.from_upload_error(err))
        except Refusal as refusal:
            return self._refuse(refusal)
        (_, outcome), = self._score_group([(0, champion, clip, record)], [None])
        if not outcome.ok:
            return Refusal(outcome.status, outcome.reason, outcome.error).response()
        return outcome.result

    # -- many clips, batched across requests ---------------------------------------------------
    @bentoml.api(
        route="/score_batch",
        input_spec=BatchInput,
        batchable=True,
        max_batch_size=SERVING.max_batch_size,
        max_latency_ms=SERVING.max_latency_ms,
    )
    def score_batch(self, clips: list[BatchClip]) -> list[BatchResult]:
        """Score clips of any machine types; BentoML gathers the clips of concurrent requests into one call."""
        results: list[BatchResult | None] = [None] * len(clips)
        pending: dict[str, list[tuple[int, LoadedChampion, DecodedClip, Any]]] = {}
        for i, item in enumerate(clips):
            try:
                champion = self._champion(item.machine_type)
                clip = _decode(champion, None, item.audio_base64, item.waveform, item.sample_rate, "audio_base64")
                record = clip_record(item.machine_type, item.domain, item.section, item.attributes, item.filename)
            except UploadError as err:
                results[i] = _failed(item, self._refuse(Refusal.from_upload_error(err), respond=False))
                continue
            except Refusal as refusal:
                results[i] = _failed(item, self._refuse(refusal, respond=False))
                continue
            pending.setdefault(item.machine_type, []).append((i, champion, clip, record))
        for group in pending.values():
            # the version seen when the clip was decoded scores it, even if a swap happens meanwhile
            by_version: dict[str, list[tuple[int, LoadedChampion, DecodedClip, Any]]] = {}
            for entry in group:
                by_version.setdefault(entry[1].version, []).append(entry)
            for entries in by_version.values():
                for i, result in self._score_group(entries, clips):
                    results[i] = result
        return [r for r in results if r is not None]

    def _score_group(self, entries, clips: list) -> list[tuple[int, BatchResult]]:
        """One detector call for the clips of one model version; clip by clip if that call fails.

        A clip the detector cannot use is refused with 422, whether the detector (or its log-mel
        front end) raises or returns a non-finite score for it; clips too short for its stacked
        frames are refused as too_short before they get here (champions.clip_limits).
        """
        champion = entries[0][1]
        records = [r for *_, r in entries]
        try:
            # the registered model's own path ([separator ->] detector), as the gate scored it
            scores = np.asarray(champion.path.score([c.waveform for _, _, c, _ in entries],
                                                    records if any(r is not None for r in records) else None),
                                dtype=float)
        except AsdflowError as problem:  # DetectorError, or AudioError from the log-mel front end
            if len(entries) > 1:  # find the clip at fault, keep the others' scores
                return [pair for entry in entries for pair in self._score_group([entry], clips)]
            return [(entries[0][0], self._unscorable(champion, clips[entries[0][0]], str(problem)))]
        except Exception as problem:  # noqa: BLE001 - MemoryError and the like: this clip fails, never its neighbours
            if len(entries) > 1:
                return [pair for entry in entries for pair in self._score_group([entry], clips)]
            log.warning("%s version %s failed on one clip: %s", champion.name, champion.version,
                        type(problem).__name__)
            refusal = Refusal(500, "scoring_failed", f"{champion.name} version {champion.version} failed on this "
                                                     f"clip ({type(problem).__name__}); the other clips are scored")
            return [(entries[0][0], _failed(clips[entries[0][0]], self._refuse(refusal, respond=False)))]
        out = []
        for (i, _, clip, _), score in zip(entries, scores):
            if not np.isfinite(score):
                out.append((i, self._unscorable(champion, clips[i], f"no finite score for a {clip.duration:.3f} s clip")))
            else:
                out.append((i, BatchResult(id=getattr(clips[i], "id", None), ok=True, status=200,
                                           result=_result(champion, clip, float(score)))))
        return out

    def _unscorable(self, champion: LoadedChampion, item, problem: str) -> BatchResult:
        refusal = Refusal(422, "unscorable", f"{champion.name} version {champion.version} cannot score this clip: {problem}")
        return _failed(item, self._refuse(refusal, respond=False))

    # -- helpers -----------------------------------------------------------------------------
    def _champion(self, machine_type: str) -> LoadedChampion:
        if machine_type not in self.store.machine_types:
            shown = machine_type if len(machine_type) <= 64 else machine_type[:64] + f"... ({len(machine_type)} chars)"
            raise Refusal(404, "unknown_machine_type",
                          f"unknown machine type {shown!r}: this server scores "
                          f"{', '.join(self.store.machine_types) or 'nothing yet'}")
        champion = self.store.get(machine_type)
        if champion is None:
            problem = self.store.status()["models"][machine_type]["error"] or "still loading"
            raise Refusal(503, "model_not_loaded", f"no model for {machine_type} loaded yet ({problem})")
        return champion

    def _refuse(self, refusal: Refusal, respond: bool = True):
        REFUSED.labels(reason=refusal.reason).inc()
        log.info("refused (%s %s): %s", refusal.status, refusal.reason, refusal.message)
        return refusal.response() if respond else refusal


def clip_record(machine_type: str, domain: str | None, section: str | None,
                attributes: dict[str, str] | None, filename: str | None):
    """The clip's conditions as a ClipRecord for a family that conditions on them: the fields given,
    else what a DCASE file name says; None when there is neither (the family's documented default)."""
    from asdflow.data.manifest import ClipRecord
    from asdflow.data.naming import parse_clip_name

    parsed = parse_clip_name(Path(filename).name) if filename else None
    if domain is None and section is None and attributes is None and parsed is None:
        return None
    domain = domain if domain is not None else (parsed.domain if parsed else None)
    if domain not in (None, "", "source", "target"):
        raise Refusal(422, "bad_domain", f"`domain` must be source or target, got {str(domain)[:40]!r}")
    section = section if section is not None else (parsed.section if parsed else "00")
    if not (isinstance(section, str) and section.isdigit() and len(section) <= 4):
        raise Refusal(422, "bad_section", f"`section` must be digits such as \"00\", got {str(section)[:40]!r}")
    chosen = attributes if attributes is not None else (parsed.attributes if parsed else {})
    return ClipRecord(path="", name=Path(filename).name if filename else "upload.wav", machine_type=machine_type,
                      section=section.zfill(2), domain=domain or None, split="test",
                      attributes={str(k)[:64]: str(v)[:64] for k, v in list(chosen.items())[:32]})


def _decode(
    champion: LoadedChampion,
    audio: bytes | None,
    audio_base64: str | None,
    waveform: list[float] | None,
    sample_rate: int | None,
    source: str,
) -> DecodedClip:
    given = [name for name, value in (("audio", audio), ("audio_base64", audio_base64), ("waveform", waveform))
             if value is not None]
    if len(given) != 1:
        raise Refusal(400, "no_audio" if not given else "ambiguous_input",
                      "send exactly one of an `audio` file upload, `audio_base64` or a `waveform` float array "
                      f"(given: {', '.join(given) or 'none'})")
    if waveform is not None:
        return decode_samples(waveform, sample_rate, champion.limits)
    if audio_base64 is not None:
        try:
            audio = base64.b64decode(audio_base64, validate=True)
        except (binascii.Error, ValueError):
            raise Refusal(400, "bad_base64", "`audio_base64` is not valid base64") from None
        source = "audio_base64"
    return decode_upload(audio, champion.limits, source=source)


def _publish_version(champion: LoadedChampion) -> None:
    try:
        CHAMPION_VERSION.labels(machine_type=champion.machine_type).set(float(champion.version))
    except ValueError:  # a registry with non-numeric versions: the gauge stays unset
        pass


def _die_with_parent() -> None:
    """Linux: this worker gets SIGTERM when the process that started it dies, so a kill -9 of
    `asdflow serve` does not leave a worker answering on the port (the orphan a restart trips on)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the port check of `asdflow serve` still refuses the orphan
        log.info("no parent-death signal on this platform")


def _publish_registry_health(ok: bool, ok_at: float | None) -> None:
    REGISTRY_UP.set(1.0 if ok else 0.0)
    if ok_at is not None:
        REGISTRY_OK_AT.set(ok_at)


def _result(champion: LoadedChampion, clip: DecodedClip, score: float) -> ScoreResult:
    threshold = float(champion.detector.threshold)
    anomalous = bool(champion.detector.decide(score))
    decision = "anomalous" if anomalous else "normal"
    SCORES.labels(machine_type=champion.machine_type).observe(score)
    CLIPS.labels(machine_type=champion.machine_type, decision=decision).inc()
    return ScoreResult(
        machine_type=champion.machine_type, model_name=champion.name, model_version=champion.version,
        score=score, threshold=threshold, decision=decision, is_anomalous=anomalous,
        duration_s=round(clip.duration, 6), sample_rate=clip.sample_rate, notes=clip.notes,
    )


def _failed(item: BatchClip | None, refusal: Refusal) -> BatchResult:
    return BatchResult(id=getattr(item, "id", None), ok=False, status=refusal.status, error=refusal.message,
                       reason=refusal.reason)


async def _models_view(request):
    """GET /models: the served version of each machine type, when it was loaded, any load problem."""
    service = bentoml.get_current_service()
    if service is None:
        return JSONResponse({"error": "the service is starting", "reason": "starting", "status": 503}, status_code=503)
    return JSONResponse(service.store.status())


# BentoML labels its request metrics with the raw path: 3000 GETs to random unknown paths grew /metrics
# from 9 KB to 13 MB and the worker by 230 MB. Paths the service does not serve share one label.
KNOWN_PATHS = frozenset({"/", "/score", "/score_batch", "/models", "/livez", "/readyz", "/healthz", "/metrics",
                         "/docs", "/docs.json", "/schema.json"})
UNKNOWN_PATH = "/__unknown__"


def _bound_metric_paths() -> None:
    from bentoml._internal.server.http import instruments

    base = instruments.RunnerTrafficMetricsMiddleware
    if getattr(base, "asdflow_bounded", False):
        return

    class BoundedPathMetrics(base):  # the app builds its middleware list from this module attribute, lazily
        asdflow_bounded = True

        async def __call__(self, scope, receive, send):
            path = scope.get("path", "")
            if scope.get("type", "").startswith("http") and path not in KNOWN_PATHS \
                    and not path.startswith("/static_content/"):
                scope = {**scope, "path": UNKNOWN_PATH, "raw_path": UNKNOWN_PATH.encode()}  # still a 404
            await super().__call__(scope, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = BoundedPathMetrics


_bound_metric_paths()

# mounted passively at the root: it answers GET /models and nothing else
AnomalyDetector.mount_asgi_app(Starlette(routes=[Route("/models", _models_view, methods=["GET"])]), path="/")
AnomalyDetector.add_asgi_middleware(ReadinessMiddleware)
AnomalyDetector.add_asgi_middleware(OverloadMiddleware)
AnomalyDetector.add_asgi_middleware(
    BodyLimitMiddleware, max_request_bytes=SERVING.request_cap, max_upload_bytes=SERVING.max_upload_bytes
)
