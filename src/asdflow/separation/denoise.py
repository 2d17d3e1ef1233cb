"""Denoise a whole dataset with a trained separator: chunked overlap-add, same DCASE layout and names.

Long clips go through the model in chunks of `chunk_seconds` with `overlap` (fraction)
between neighbours; each chunk's output is weighted by a strictly positive Hann window
and the sum is divided by the summed weights, so an identity "separator" gives back the
input exactly and neighbouring chunks cross-fade without seams.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asdflow.data.audio import load_audio, write_audio
from asdflow.data.manifest import Manifest, ManifestProblem
from asdflow.errors import AudioError, DataError
from asdflow.progress import progress_bar
from asdflow.separation.model import load_separator

SEPARATION_MANIFEST = "separation_manifest.json"


def chunk_starts(n_samples: int, chunk: int, hop: int) -> list[int]:
    """Chunk start offsets covering [0, n_samples); the last chunk may run past the end (zero-padded)."""
    if n_samples <= chunk:
        return [0]
    n_chunks = -(-(n_samples - chunk) // hop) + 1  # ceil division
    return [i * hop for i in range(n_chunks)]


def overlap_add(wav: np.ndarray, process: Callable[[np.ndarray], np.ndarray], chunk: int, overlap: float = 0.5) -> np.ndarray:
    """Run `process` ([n_chunks, chunk] -> [n_chunks, chunk]) over windows of wav and cross-fade them back."""
    wav = np.asarray(wav, dtype=np.float32)
    n = len(wav)
    if n == 0:
        return wav.copy()
    chunk = min(chunk, n)
    hop = max(1, int(round(chunk * (1 - overlap))))
    starts = chunk_starts(n, chunk, hop)
    padded = np.zeros(starts[-1] + chunk, dtype=np.float32)
    padded[:n] = wav
    frames = np.stack([padded[s : s + chunk] for s in starts])
    processed = np.asarray(process(frames), dtype=np.float64)
    if processed.shape != frames.shape:
        raise ValueError(f"process returned shape {processed.shape}, expected {frames.shape}")
    window = np.hanning(chunk + 2)[1:-1] if len(starts) > 1 else np.ones(chunk)  # > 0 everywhere
    out = np.zeros(len(padded))
    weight = np.zeros(len(padded))
    for start, frame in zip(starts, processed):
        out[start : start + chunk] += window * frame
        weight[start : start + chunk] += window
    return (out / weight)[:n].astype(np.float32)


def separator_function(model: torch.nn.Module, device: str = "cpu", source: int = 0, batch: int = 8) -> Callable[[np.ndarray], np.ndarray]:
    """[n, T] mixtures -> [n, T] of one output stream (0 machine, 1 noise)."""

    def run(frames: np.ndarray) -> np.ndarray:
        outputs = []
        with torch.inference_mode():
            for i in range(0, len(frames), batch):
                x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch])).unsqueeze(1).to(device)
                outputs.append(model(x)[:, source, : frames.shape[1]].float().cpu().numpy())
        return np.concatenate(outputs)

    return run


def separate_waveform(model: torch.nn.Module, wav: np.ndarray, sample_rate: int, chunk_seconds: float,
                      overlap: float = 0.5, device: str = "cpu") -> np.ndarray:
    """The machine stream of one waveform."""
    return overlap_add(wav, separator_function(model, device), int(round(chunk_seconds * sample_rate)), overlap)


def _copy_attributes(source: Path, target: Path, machine_dir: Path) -> None:
    """Copy attributes_XX.csv, keeping the header and the rows whose clip was written (not the supplemental ones)."""
    with source.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and (machine_dir / row[0]).is_file()]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)


@dataclass
class SeparationRun:
    out_root: Path
    written: list[Path]
    problems: list[ManifestProblem] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio denoised per second of wall time."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0


def separate_dataset(
    separator_dir: str | Path,
    manifest: Manifest,
    out_root: str | Path,
    chunk_seconds: float | None = None,
    overlap: float | None = None,
    splits: tuple[str, ...] = ("train", "test"),
    progress: bool = True,
) -> SeparationRun:
    """Write the machine stream of every clip of `splits` to out_root in the same layout and names.

    attributes_XX.csv files are copied beside, so the output reads back as a dataset.
    A clip that cannot be read is listed in the run's problems and in
    separation_manifest.json; every other clip is still written.
    """
    root, out = Path(manifest.root).resolve(), Path(out_root).resolve()
    if out == root:
        raise DataError(f"{out}: the output root must differ from the dataset root (it would overwrite the originals)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, info = load_separator(separator_dir, device)
    sample_rate = int(info["config"]["sample_rate"])
    chunk_seconds = chunk_seconds or float(info["config"]["chunk_seconds"])
    overlap = float(info["config"]["overlap"]) if overlap is None else overlap
    records = [r for r in manifest.records if r.split in splits]
    if not records:
        raise DataError(f"{root}: no clip of split {'/'.join(splits)} to separate")
    written, problems, files = [], [], []
    began, audio_seconds = time.perf_counter(), 0.0
    for record in progress_bar(records, desc="separate", enabled=progress):
        relative = Path(record.path).resolve().relative_to(root)
        target = out / relative
        try:
            wav = load_audio(record.path, target_sr=sample_rate)
        except AudioError as err:
            problems.append(ManifestProblem(path=record.path, reason=f"not separated: {err}"))
            continue
        machine = separate_waveform(model, wav, sample_rate, chunk_seconds, overlap, device)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_audio(target, np.clip(machine, -1.0, 1.0), sample_rate)
        written.append(target)
        audio_seconds += len(wav) / sample_rate
        files.append({"source": str(relative), "output": str(relative), "source_md5": record.md5})
    for machine_type in sorted({r.machine_type for r in records}):
        for csv_path in (root / machine_type).glob("attributes_*.csv"):
            _copy_attributes(csv_path, out / machine_type / csv_path.name, out / machine_type)
    seconds = time.perf_counter() - began
    (out / SEPARATION_MANIFEST).write_text(json.dumps({
        "separator_version": info["version"],
        "separator_dir": str(Path(separator_dir).resolve()),
        "separator_config": info["config"],
        "source_root": str(root),
        "stream": "machine",
        "sample_rate": sample_rate,
        "chunk_seconds": chunk_seconds,
        "overlap": overlap,
        "files": files,
        "problems": [p.model_dump() for p in problems],
    }, indent=2))
    return SeparationRun(out_root=out, written=written, problems=problems, seconds=seconds, audio_seconds=audio_seconds)
