"""The champions the server scores with: `models:/asd-<machine_type>@champion`, kept current.

One `ChampionStore` per server process holds, per machine type, the loaded detector of
the version `@champion` points to. The machine types are every registered `asd-*` model
with a `@champion` (found again at each pass, so a machine type promoted later is picked
up), or the ones `serving.machine_types` narrows to. A background thread re-resolves the alias every
`serving.reload_interval_s`; when it moved (a promotion, a rollback), the new version is
loaded and warmed on that thread while requests go on with the old one, then swapped
in with one assignment, so a request sees either the old model or the new one, whole.
A failed load keeps the old model and says why in `status()`.

The scoring path is taken out of the registered pyfunc model (its `detector` artifact and,
for a detector trained on separated audio, its `separator`, read back in the pyfunc's
load_context) and called directly, batch by batch, instead of through pyfunc predict's
DataFrame round trip: the same `ScoringPath` the pyfunc (and so the gate) scores with.

No BentoML here: serving/service.py wraps this in the HTTP service.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from asdflow.config import AsdflowConfig, FeatureConfig, ServingConfig
from asdflow.detectors.base import Detector
from asdflow.errors import AsdflowError, one_line
from asdflow.serving_io import ClipLimits

log = logging.getLogger("asdflow.serving")

WARMUP_SECONDS = 2.0  # the dummy clip scored before a model counts as ready
# MLflow's HTTP client retries for about a minute by default; a reload pass gets a few seconds
# (set in the server process, serving/service.py: the variables are process-wide)
REGISTRY_DEADLINES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                      "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@dataclass(frozen=True)
class LoadedChampion:
    machine_type: str
    name: str  # registered model name, asd-<machine_type>
    version: str
    detector: Detector
    limits: ClipLimits
    path: Any  # asdflow.registry.pyfunc_model.ScoringPath: [separator ->] detector, as the gate scored it
    loaded_at: float  # time.time()
    load_seconds: float


@dataclass
class _Slot:
    model: LoadedChampion | None = None
    error: str | None = None  # the last problem seen resolving or loading this machine type
    fallback_from: str | None = None  # the champion version that failed, when an earlier one is served
    checked_at: float | None = None


class ChampionStore:
    def __init__(
        self,
        config: AsdflowConfig,
        project_dir: str | Path | None = None,
        on_swap: Callable[[LoadedChampion], None] | None = None,
        on_registry_check: Callable[[bool, float | None], None] | None = None,
    ):
        from asdflow.registry.tracking import resolve_tracking

        self.config = config
        # None: every asd-* model with a @champion, found anew at each refresh; a list narrows to those
        self.narrowed = list(config.serving.machine_types) if config.serving.machine_types else None
        self.tracking = resolve_tracking(config.tracking, project_dir)
        self._slots = {mt: _Slot() for mt in self.narrowed or []}
        self._discovery_error: str | None = None
        self._registry_error: str | None = None  # why the last pass could not read the registry
        self._registry_ok_at: float | None = None  # when a pass last read it
        self._registry_file: tuple[int, int] | None = None  # (device, inode) of a SQLite registry
        self._on_registry_check = on_registry_check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None
        self._refresh_lock = threading.Lock()
        self._on_swap = on_swap

    # -- reading (request threads) -------------------------------------------------
    def get(self, machine_type: str) -> LoadedChampion | None:
        slot = self._slots.get(machine_type)
        return slot.model if slot else None

    @property
    def machine_types(self) -> list[str]:
        """The machine types served: the narrowed list, else every one whose champion was found so far."""
        return sorted(self._slots)

    def ready(self) -> bool:
        """Every champion found (or every machine type of the narrowed list) is loaded and warmed;
        a registry without any champion is not ready: there is nothing to serve."""
        return bool(self._slots) and all(slot.model is not None for slot in self._slots.values())

    def ready_by_machine_type(self) -> dict[str, bool]:
        """Per machine type: a model is loaded (the champion, or an earlier one while it fails to load)."""
        return {mt: slot.model is not None for mt, slot in sorted(self._slots.items())}

    def status(self) -> dict[str, Any]:
        """What /models shows: no credentials and no absolute file paths (the server's layout is its own)."""
        out: dict[str, Any] = {"ready": self.ready(),
                               "tracking_uri": redact_paths(_without_credentials(self.tracking.tracking_uri)),
                               "machine_types": "narrowed by serving.machine_types" if self.narrowed
                               else "every model with a @champion", "models": {}}
        if self._discovery_error:
            out["error"] = redact_paths(self._discovery_error)
        age = time.time() - self._registry_ok_at if self._registry_ok_at is not None else None
        out["registry"] = {"ok": self._registry_error is None and self._registry_ok_at is not None,
                           "error": redact_paths(self._registry_error) if self._registry_error else None,
                           "last_ok_at": self._registry_ok_at,
                           "seconds_since_ok": round(age, 1) if age is not None else None}
        for mt, slot in self._slots.items():
            model = slot.model
            out["models"][mt] = {
                "name": self.model_name(mt),
                "version": model.version if model else None,
                "loaded_at": model.loaded_at if model else None,
                "load_seconds": round(model.load_seconds, 3) if model else None,
                "threshold": float(model.detector.threshold) if model and model.detector.threshold is not None else None,
                "error": redact_paths(slot.error) if slot.error else None,
                "fallback_from": slot.fallback_from,  # the champion that failed to load, when serving an earlier one
                "checked_at": slot.checked_at,
            }
        return out

    def model_name(self, machine_type: str) -> str:
        from asdflow.registry.models import model_name

        return model_name(machine_type, self.tracking)

    # -- the reload thread ------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="asdflow-champion-reload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        interval = self.config.serving.reload_interval_s
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(interval)

    def refresh(self) -> dict[str, str]:
        """One pass: resolve every @champion, load and swap in those that changed.

        Returns machine type -> what happened ("loaded <v>", "unchanged", "error: ...").
        """
        with self._refresh_lock:
            try:
                self._check_registry_file()
            except AsdflowError as err:  # keep serving what is loaded; say why nothing changes
                self._registry_failed(str(err))
                return {mt: f"error: {err}" for mt in self.machine_types}
            self._registry_error = None
            if self.narrowed is None:
                self._discover()
            outcome = {mt: self._refresh_one(mt) for mt in self.machine_types}
            if self._registry_error is None:
                self._registry_ok_at = time.time()
            if self._on_registry_check is not None:
                self._on_registry_check(self._registry_error is None, self._registry_ok_at)
            return outcome

    def _check_registry_file(self) -> None:
        """A SQLite registry must exist (MLflow would create an empty one, and the server would serve
        nothing, silently); one replaced on disk is reopened, and said so."""
        from asdflow.registry.promotion_lock import sqlite_path

        path = sqlite_path(self.tracking.tracking_uri)
        if path is None:
            return
        try:
            stat = path.stat()
        except OSError:
            raise AsdflowError(f"the registry database {path.name} does not exist (moved or deleted?): "
                               "not creating an empty one; still serving what is loaded") from None
        identity = (stat.st_dev, stat.st_ino)
        if self._registry_file is not None and identity != self._registry_file:
            log.warning("the registry database %s was replaced: reopening it", path.name)
            self._client = None  # the next call opens the new file
        self._registry_file = identity

    def _registry_failed(self, message: str) -> None:
        if self._registry_error != message:
            log.warning(message)
        self._registry_error = message
        if self._on_registry_check is not None:
            self._on_registry_check(False, self._registry_ok_at)

    def _discover(self) -> None:
        """Add a slot for every registered detector model (named by `tracking.model_name_template`)
        that has a @champion: a machine type promoted after start-up is picked up by the next pass."""
        from asdflow.registry.models import CHAMPION, alias_version

        template = self.tracking.model_name_template
        prefix, _, suffix = template.partition("{machine_type}")
        try:
            client = self._mlflow_client()
            names = [m.name for m in _all_registered_models(client, prefix)]
            for name in names:
                if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
                    continue
                machine_type = name[len(prefix): len(name) - len(suffix)]
                if machine_type not in self._slots and alias_version(client, name, CHAMPION) is not None:
                    self._slots[machine_type] = _Slot()  # a new dict entry: readers see it whole or not at all
            self._discovery_error = None
            if not self._slots:
                self._discovery_error = f"no registered model named {template} has a @champion yet"
        except Exception as err:  # the store is unreachable: keep serving what is loaded
            self._discovery_error = f"cannot list the registered models: {_reason(err)}"
            self._registry_failed(self._discovery_error)

    def _refresh_one(self, machine_type: str) -> str:
        slot = self._slots[machine_type]
        slot.checked_at = time.time()
        name = self.model_name(machine_type)
        try:
            version = self._champion_version(name)
        except Exception as err:  # the store is unreachable: keep serving what is loaded
            self._registry_error = self._registry_error or f"cannot resolve {name}@champion: {_reason(err)}"
            return self._failed(slot, f"cannot resolve {name}@champion: {_reason(err)}")
        if version is None:
            serving = f"; still serving version {slot.model.version}" if slot.model else ""
            return self._failed(slot, f"{name} has no @champion alias{serving}")
        if slot.model is not None and slot.model.version == version:
            slot.error = None
            return "unchanged"
        try:
            model = self._load(machine_type, name, version)
        except Exception as err:  # a broken version never replaces a working one
            problem = f"cannot load {name} version {version}: {_reason(err)}"
            if slot.model is None:  # at start-up: the last good champion rather than nothing
                fallback = self._last_good(machine_type, name, version)
                if fallback is not None:
                    slot.model, slot.fallback_from = fallback, version
                    if self._on_swap is not None:
                        self._on_swap(fallback)
                    return self._failed(slot, f"{problem}; serving version {fallback.version}, an earlier "
                                              "champion, meanwhile")
            serving = f"; still serving version {slot.model.version}" if slot.model else ""
            return self._failed(slot, f"{problem}{serving}")
        previous = slot.model.version if slot.model else None
        slot.model = model  # the swap: one reference assignment, atomic for readers
        slot.error = slot.fallback_from = None
        if self._on_swap is not None:
            self._on_swap(model)
        log.info("%s: serving version %s (was %s), loaded and warmed in %.2f s",
                 name, version, previous or "none", model.load_seconds)
        return f"loaded {version}"

    def _failed(self, slot: _Slot, message: str) -> str:
        if slot.error != message:  # log each new problem once, not every interval
            log.warning(message)
        slot.error = message
        return f"error: {message}"

    # -- MLflow -----------------------------------------------------------------------
    def _mlflow_client(self):
        if self._client is None:
            import mlflow

            uri = self.tracking.tracking_uri
            # pyfunc.load_model("models:/...") reads the process-wide URIs
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            self._client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client

    def _champion_version(self, name: str) -> str | None:
        from asdflow.registry.models import CHAMPION, alias_version

        return alias_version(self._mlflow_client(), name, CHAMPION)

    def _last_good(self, machine_type: str, name: str, broken: str, steps: int = 3) -> LoadedChampion | None:
        """The newest earlier champion that loads, following `previous_champion` tags back from `broken`."""
        client = self._mlflow_client()
        version = broken
        for _ in range(steps):
            try:
                version = (client.get_model_version(name, version).tags or {}).get("previous_champion")
            except Exception:  # noqa: BLE001 - the registry cannot say: no fallback
                return None
            if not version or version == "none":
                return None
            try:
                return self._load(machine_type, name, version)
            except Exception as err:  # noqa: BLE001 - that one is broken too: one further back
                log.warning("%s version %s (an earlier champion) does not load either: %s", name, version,
                            _reason(err))
        return None

    def _load(self, machine_type: str, name: str, version: str) -> LoadedChampion:
        import mlflow.pyfunc

        from asdflow.registry.tracking import artifact_progress

        started = time.perf_counter()
        self._mlflow_client()
        with artifact_progress(False):
            pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        wrapped = pyfunc.unwrap_python_model()
        path, detector = getattr(wrapped, "path", None), getattr(wrapped, "detector", None)
        if path is None or not isinstance(detector, Detector):
            raise AsdflowError(f"{name} version {version} is not an asdflow detector model")
        if detector.threshold is None:
            raise AsdflowError(f"{name} version {version} has no decision threshold")
        if detector.machine_type not in (None, machine_type):
            raise AsdflowError(f"{name} version {version} holds a {detector.machine_type} detector")
        limits = clip_limits(self.config.serving, detector)
        warm_up(path, limits)
        return LoadedChampion(
            machine_type=machine_type, name=name, version=str(version), detector=detector, limits=limits,
            path=path, loaded_at=time.time(), load_seconds=time.perf_counter() - started,
        )


def _all_registered_models(client, prefix: str) -> list:
    """Every registered model whose name starts with `prefix`, page by page."""
    models, token = [], None
    while True:
        page = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'", max_results=100,
                                               page_token=token)
        models += list(page)
        token = getattr(page, "token", None)
        if not token:
            return models


def detector_min_seconds(features: FeatureConfig) -> float:
    """The shortest clip the detector can score: `n_frames` stacked log-mel frames, and more than
    half an STFT window for the log-mel's reflect padding; rounded up to the millisecond."""
    samples = (features.n_frames - 1) * features.hop_length + features.n_fft // 2 + 1
    return math.ceil(samples / features.sample_rate * 1000) / 1000


def clip_limits(serving: ServingConfig, detector: Detector) -> ClipLimits:
    """What the server accepts for this detector: `serving.min_seconds`, raised to the detector's own
    minimum, so a clip too short to score is refused as `too_short` before it reaches a batch."""
    limits = ClipLimits.from_config(serving, detector.features.sample_rate)
    floor = detector_min_seconds(detector.features)
    return limits if limits.min_seconds >= floor else replace(limits, min_seconds=floor)


def warm_up(path, limits: ClipLimits) -> float:
    """One dummy inference through the whole scoring path (lazy modules built, first-call costs paid);
    its score must be finite."""
    seconds = min(max(WARMUP_SECONDS, limits.min_seconds), limits.max_seconds)
    noise = np.random.default_rng(0).standard_normal(int(seconds * limits.target_sr)).astype(np.float32) * 0.01
    score = float(np.asarray(path.score([noise]))[0])
    if not np.isfinite(score):
        raise AsdflowError(f"warm-up inference gave a non-finite score ({score})")
    return score


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/,;()]+/)+([^\s'\"/,;()]*)")


def redact_paths(text: str) -> str:
    """/srv/project/mlruns/mlflow.db -> .../mlflow.db, in URIs (sqlite:////srv/...) and messages alike."""
    text = re.sub(r"\b(sqlite|file):/+(?:[^\s'\"/]+/)+", r"\1:///.../", text)
    return _ABSOLUTE_PATH.sub(lambda m: ".../" + m.group(1), text)


def _without_credentials(uri: str) -> str:
    """http://user:secret@host/ -> http://host/ (the status endpoint is not the place for secrets)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _reason(err: Exception) -> str:
    """One line for status(); a foreign exception's class is named (ConnectionError: ...), ours speak for themselves."""
    return one_line(err) if isinstance(err, AsdflowError) else f"{type(err).__name__}: {one_line(err)}"
