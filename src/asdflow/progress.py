"""Progress bars on long work, silenced by config or when not wanted (tests, servers)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(items: Iterable[T], desc: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    return iter(tqdm(items, desc=desc, disable=not enabled, total=total, leave=False, dynamic_ncols=True))
