"""Scoped torch thread count.

Small dense models gain nothing from intra-op threads, and on a shared 2-core
machine spinning OpenMP workers made one training epoch 16x slower (0.6 s with
1 thread vs 10 s with 2 while another process was busy; /tmp measurement in the
foundation work). Families pick their count from config.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    if not n or torch.get_num_threads() == n:  # nothing to change: leave the process-wide setting alone
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
