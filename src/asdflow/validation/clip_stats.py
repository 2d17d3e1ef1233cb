"""Per-clip signal statistics, read at the file's native rate (never resampled).

Validation must see the file as it is on disk: a 44.1 kHz or stereo clip has to
show up as such, so this reads with soundfile directly instead of
`asdflow.data.audio.load_audio` (which mixes down, resamples and raises on NaN).
A file that cannot be read becomes a row flagged `readable=False` with the
reason, so one bad file never stops the statistics of the others.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.progress import progress_bar

STAT_COLUMNS = [
    "readable",
    "read_error",
    "stat_sample_rate",
    "stat_channels",
    "stat_frames",
    "stat_duration",
    "nonfinite",
    "rms",
    "clipping_ratio",
]


@dataclass(frozen=True)
class ClipStats:
    readable: bool
    read_error: str | None = None
    stat_sample_rate: int | None = None
    stat_channels: int | None = None
    stat_frames: int | None = None
    stat_duration: float | None = None  # seconds
    nonfinite: int | None = None  # NaN or +-inf samples (any channel)
    rms: float | None = None  # over the finite samples of all channels
    clipping_ratio: float | None = None  # fraction of finite samples with |x| >= clipping_level


def clip_stats(path: str, clipping_level: float = 0.999) -> ClipStats:
    """Statistics of one file; never raises for a bad file (the row says why)."""
    try:
        data, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile, OSError, a truncated header...: all mean "unreadable"
        return ClipStats(readable=False, read_error=_reason(err))
    frames, channels = data.shape
    finite = np.isfinite(data)
    n_finite = int(finite.sum())
    nonfinite = data.size - n_finite
    if nonfinite:
        data = np.where(finite, data, np.float32(0.0))
    # float64 accumulation: a float32 sum of 160k squares loses digits near the silence floor
    rms = float(np.sqrt(np.einsum("ij,ij->", data, data, dtype=np.float64) / n_finite)) if n_finite else 0.0
    clipped = int(np.count_nonzero(np.abs(data) >= clipping_level))
    return ClipStats(
        readable=True,
        stat_sample_rate=int(sample_rate),
        stat_channels=int(channels),
        stat_frames=int(frames),
        stat_duration=frames / sample_rate if sample_rate else 0.0,
        nonfinite=int(nonfinite),
        rms=rms,
        clipping_ratio=clipped / n_finite if n_finite else 0.0,
    )


def compute_clip_stats(
    records: list[ClipRecord],
    clipping_level: float = 0.999,
    workers: int = 2,
    progress: bool = True,
) -> list[ClipStats]:
    """Statistics of every clip, in record order. soundfile (cffi) and numpy release the
    GIL while decoding and reducing, so a few threads keep both cores busy."""
    paths = [r.path for r in records]
    if workers <= 1 or len(paths) < 2:
        results = map(lambda p: clip_stats(p, clipping_level), paths)
        return list(progress_bar(results, desc="clip statistics", enabled=progress, total=len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: clip_stats(p, clipping_level), paths)
        return list(progress_bar(results, desc="clip statistics", enabled=progress, total=len(paths)))


def stats_frame(
    manifest: Manifest,
    clipping_level: float = 0.999,
    workers: int = 2,
    progress: bool = True,
) -> pd.DataFrame:
    """The manifest's columns plus the statistics, one row per record, in record order.

    `clip_id` (the path relative to the manifest root) names a clip uniquely: DCASE
    file names repeat across machine types."""
    frame = manifest.to_frame()
    stats = compute_clip_stats(manifest.records, clipping_level, workers, progress)
    stat_rows = pd.DataFrame([asdict(s) for s in stats], columns=STAT_COLUMNS)
    frame = pd.concat([frame.reset_index(drop=True), stat_rows], axis=1)
    frame.insert(0, "clip_id", [clip_id(manifest.root, r.path) for r in manifest.records])
    # nullable dtypes keep "unreadable" apart from 0 without turning counts into floats
    for column in ("stat_sample_rate", "stat_channels", "stat_frames", "nonfinite"):
        frame[column] = frame[column].astype("Int64")
    for column in ("stat_duration", "rms", "clipping_ratio"):
        frame[column] = frame[column].astype("float64")
    frame["readable"] = frame["readable"].astype(bool)
    return frame


def clip_id(root: str, path: str) -> str:
    """`<machine_type>/<split>/<file>` under the manifest root, else the path as given.

    Lexical (abspath, no symlink resolution): it runs once per clip and must not stat."""
    base, full = os.path.abspath(root) if root else "", os.path.abspath(path)
    if base and full.startswith(base.rstrip(os.sep) + os.sep):
        return Path(os.path.relpath(full, base)).as_posix()
    return Path(path).as_posix()


def _reason(err: Exception) -> str:
    text = str(err).strip()
    line = text.splitlines()[-1] if text else type(err).__name__
    return line.split(": ", 1)[-1] if line.startswith("Error opening") else line
