"""One promotion at a time per registered model: what makes a guarded promotion compare-and-set.

MLflow has no compare-and-set on an alias: `promote(expected_champion=...)` reads `@champion`, then
sets it, and two overlapping promotions that both expect version 1 both "win" (measured: 3 of 6
rounds). Each backend gets the strongest exclusion it allows:

- a SQLite store (`sqlite:///...`, one host): an exclusive `flock` on `<db>.promote-<model>.lock`
  around read, check and write. Exactly one of N overlapping promotions (threads or processes on
  that host) sees the expected champion; the others find it moved and get a conflict naming the winner.
- an MLflow server (`http(s)://...`): a lease in the registered model's tag `promotion_lease`: each
  promotion writes its own token, waits `LEASE_SETTLE_S`, and goes on only if the tag still holds its
  token (the last writer wins the lease, every other one stands down naming it); the winner re-reads
  `@champion` before moving it and clears the lease. Promotions that overlap within the settle time
  are serialised; a promotion that starts after another one's lease check can only race the alias
  write itself, which the re-read of `@champion` right after the write reports as a conflict.
  This is the best the REST API allows: no two promotions both return "promoted" unless their alias
  writes interleave within milliseconds, and then the loser is told.
- any other store: no lock (documented), the check-then-set as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

LEASE_TAG = "promotion_lease"
LEASE_SETTLE_S = 0.3  # how long concurrent lease writers have to overwrite each other
LEASE_STALE_S = 120.0  # a lease older than this (a crashed promotion) is taken over


class PromotionConflict(Exception):
    """Another promotion of the same model holds the lock or lease (its holder, when known)."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    prefix = "sqlite:///"  # SQLAlchemy: what follows is the path, absolute when it starts with "/"
    if not tracking_uri.startswith(prefix):
        return None
    return Path(unquote(tracking_uri[len(prefix):].split("?", 1)[0]))


@contextlib.contextmanager
def promotion_lock(client, tracking_uri: str, name: str, version: str) -> Iterator[None]:
    """Hold the model's promotion lock (SQLite) or lease (an MLflow server) for one promotion."""
    database = sqlite_path(tracking_uri)
    if database is not None:
        lock_file = database.with_name(f"{database.name}.promote-{name}.lock")
        with open(lock_file, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the other promotion has finished
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if tracking_uri.startswith(("http://", "https://")):
        token = f"{uuid.uuid4().hex}:{version}:{time.time():.3f}"
        _take_lease(client, name, token)
        try:
            yield
        finally:
            _release_lease(client, name, token)
        return
    yield


def _lease_of(client, name: str) -> str | None:
    return (client.get_registered_model(name).tags or {}).get(LEASE_TAG) or None


def _take_lease(client, name: str, token: str) -> None:
    held = _lease_of(client, name)
    if held and not _stale(held):
        raise PromotionConflict(_holder(held))
    client.set_registered_model_tag(name, LEASE_TAG, token)
    time.sleep(LEASE_SETTLE_S)  # every promotion that overlaps this one writes its token meanwhile
    held = _lease_of(client, name)
    if held != token:
        raise PromotionConflict(_holder(held) if held else "another promotion")


def _release_lease(client, name: str, token: str) -> None:
    with contextlib.suppress(Exception):  # a lease left behind goes stale; never mask the promotion's outcome
        if _lease_of(client, name) == token:
            client.delete_registered_model_tag(name, LEASE_TAG)


def _stale(lease: str) -> bool:
    try:
        return time.time() - float(lease.rsplit(":", 1)[1]) > LEASE_STALE_S
    except (IndexError, ValueError):
        return True


def _holder(lease: str) -> str:
    parts = lease.split(":")
    return f"the promotion of version {parts[1]}" if len(parts) >= 2 else "another promotion"
