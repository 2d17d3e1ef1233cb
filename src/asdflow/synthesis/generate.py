"""Generate synthetic normal clips with a (fine-tuned) Tango, as DCASE-layout training clips.

For each prompt strategy, N clips: prompts are drawn (seeded) from the machine
type's rows of that strategy in the prompt table; each clip has its own seed
(its DDIM start noise), guidance scale and step count from the config. Clips
are written at 16 kHz to

    <out>/<machine_type>/train/section_SS_<domain>_train_normal_NNNN_strategy_<strategy>.wav

(section and domain those of the real clip the prompt was made from; the
strategy is a file-name attribute, `clap_ranked` spelt `clap-ranked` so the
attribute parser keeps it whole), with `<out>/<machine_type>/metadata.csv`
(clip, prompt, strategy, seed, model_version, source_clip, guidance_scale,
inference_steps) and `<out>/manifest.csv`: the reader's manifest with
`synthetic=True` on every generated clip (`synthetic_manifest`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field

from asdflow.config import AsdflowConfig
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError
from asdflow.progress import progress_bar
from asdflow.synthesis.model import TangoModel

METADATA_FILE = "metadata.csv"
METADATA_COLUMNS = ["clip", "prompt", "strategy", "seed", "model_version", "source_clip", "guidance_scale",
                    "inference_steps"]
CLIP_SEED_STRIDE = 1_000_003  # clip seeds of different generation seeds never collide for < 1M clips


class GenerateResult(BaseModel):
    machine_type: str
    out_root: str
    clips: list[str] = Field(default_factory=list)  # paths of the written wavs
    per_strategy: dict[str, int] = Field(default_factory=dict)
    skipped_strategies: dict[str, str] = Field(default_factory=dict)  # strategy -> why
    metadata_csv: str = ""
    model_version: str = ""
    seconds: float = 0.0
    seconds_per_clip: float = 0.0
    target_rms: float | None = None


def clip_name(section: str, domain: str, index: int, strategy: str) -> str:
    return f"section_{section}_{domain}_train_normal_{index:04d}_strategy_{strategy.replace('_', '-')}.wav"


def real_rms(manifest: Manifest, machine_type: str, sample_rate: int, limit: int = 32) -> float | None:
    """Median RMS of (up to `limit`) real normal training clips: the level generated clips are scaled to."""
    from asdflow.data.audio import load_audio
    from asdflow.synthesis.finetune import real_normal_records

    values = [float(np.sqrt(np.mean(np.square(load_audio(r.path, sample_rate), dtype=np.float64))))
              for r in sorted(real_normal_records(manifest, machine_type), key=lambda r: r.path)[:limit]]
    return float(np.median(values)) if values else None


def _prompt_rows(table: pd.DataFrame, machine_type: str, strategy: str) -> pd.DataFrame:
    rows = table[table["strategy"] == strategy]
    if "machine_type" in rows.columns:
        rows = rows[rows["machine_type"] == machine_type]
    return rows[rows["text"].astype(str).str.strip() != ""].reset_index(drop=True)


def generate_normals(
    model: TangoModel | str | Path,
    manifest: Manifest,
    machine_type: str,
    config: AsdflowConfig,
    out_root: str | Path,
    prompt_table: pd.DataFrame,
    *,
    strategies: list[str] | None = None,
    clips_per_strategy: int | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> GenerateResult:
    """Write `clips_per_strategy` synthetic normal clips per strategy (see the module doc).

    model: a TangoModel or a fine-tuned model folder. manifest: the real clips (their
    sections, domains and level). A strategy with no prompt for this machine type (e.g.
    metadata without attributes) is skipped and named in `skipped_strategies`.
    """
    from asdflow.data.audio import write_audio
    from asdflow.synthesis.finetune import load_finetuned_tango

    synth = config.synthesis
    progress = config.progress if progress is None else progress
    device_ = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(model, TangoModel):
        model = load_finetuned_tango(model, device_)
    model.to(device_).eval_all()
    version = model.version or model.source
    strategies = list(strategies or synth.strategies)
    n_clips = clips_per_strategy or synth.clips_per_strategy
    out_root = Path(out_root)
    machine_dir = out_root / machine_type
    _remove_previous(machine_dir)
    records = {r.name: r for r in manifest.records if r.machine_type == machine_type}
    target_rms = real_rms(manifest, machine_type, synth.sample_rate) if synth.match_level else None
    n_frames = model.mel.n_frames(synth.duration, model.frame_multiple)
    n_samples = int(round(synth.duration * synth.sample_rate))

    result = GenerateResult(machine_type=machine_type, out_root=str(out_root), model_version=str(version),
                            target_rms=target_rms)
    jobs: list[dict] = []
    for s_index, strategy in enumerate(strategies):
        rows = _prompt_rows(prompt_table, machine_type, strategy)
        if rows.empty:
            result.skipped_strategies[strategy] = f"no {strategy} prompt for {machine_type} in the prompt table"
            continue
        order = np.random.default_rng([synth.seed, s_index]).permutation(len(rows))
        for i in range(n_clips):
            row = rows.iloc[int(order[i % len(rows)])]
            source = records.get(Path(str(row["clip"])).name)
            index = len(jobs)
            jobs.append({
                "index": index, "strategy": strategy, "prompt": str(row["text"]), "source_clip": str(row["clip"]),
                "seed": synth.seed * CLIP_SEED_STRIDE + index,
                "section": source.section if source is not None else "00",
                "domain": (source.domain if source is not None and source.domain else "source"),
            })
        result.per_strategy[strategy] = n_clips
    if not jobs:
        raise DataError(f"no prompts for {machine_type} in any of the strategies {strategies}")

    started = time.perf_counter()
    rows_out = []
    batches = [jobs[i: i + synth.generate_batch_size] for i in range(0, len(jobs), synth.generate_batch_size)]
    for batch in progress_bar(batches, desc=f"generating {machine_type}", enabled=progress):
        generators = [torch.Generator().manual_seed(job["seed"]) for job in batch]
        waves = model.sample([job["prompt"] for job in batch], n_frames, synth.inference_steps,
                             synth.guidance_scale, generators, synth).cpu().numpy()
        for job, wav in zip(batch, waves):
            wav = wav[:n_samples].astype(np.float64)
            if target_rms is not None:
                rms = float(np.sqrt(np.mean(wav**2)))
                wav = wav * (target_rms / rms) if rms > 1e-12 else wav
            name = clip_name(job["section"], job["domain"], job["index"], job["strategy"])
            path = write_audio(machine_dir / "train" / name, wav.astype(np.float32), synth.sample_rate)
            result.clips.append(str(path))
            rows_out.append({"clip": f"train/{name}", "prompt": job["prompt"], "strategy": job["strategy"],
                             "seed": job["seed"], "model_version": version, "source_clip": job["source_clip"],
                             "guidance_scale": synth.guidance_scale, "inference_steps": synth.inference_steps})
    result.seconds = time.perf_counter() - started
    result.seconds_per_clip = result.seconds / len(jobs)
    metadata = machine_dir / METADATA_FILE
    pd.DataFrame(rows_out, columns=METADATA_COLUMNS).to_csv(metadata, index=False)
    result.metadata_csv = str(metadata)
    synthetic_manifest(out_root, progress=False).save(out_root)
    return result


def _remove_previous(machine_dir: Path) -> None:
    """A re-run replaces this machine type's earlier generated clips (those its metadata lists)."""
    metadata = machine_dir / METADATA_FILE
    if metadata.is_file():
        for clip in pd.read_csv(metadata)["clip"]:
            (machine_dir / str(clip)).unlink(missing_ok=True)
        metadata.unlink()


def read_metadata(root: str | Path) -> pd.DataFrame:
    """Every machine type's metadata.csv under a generated root, with a machine_type column."""
    frames = []
    for path in sorted(Path(root).glob(f"*/{METADATA_FILE}")):
        frame = pd.read_csv(path)
        frame.insert(0, "machine_type", path.parent.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["machine_type", *METADATA_COLUMNS])


def synthetic_manifest(root: str | Path, progress: bool = False) -> Manifest:
    """The reader's manifest of a generated root, `synthetic=True` on every clip a metadata.csv lists."""
    from asdflow.data.dcase_reader import build_manifest

    root = Path(root)
    manifest = build_manifest(root, progress=progress)
    listed = {(Path(root) / row.machine_type / str(row.clip)).resolve() for row in read_metadata(root).itertuples()}
    for record in manifest.records:
        if Path(record.path).resolve() in listed:
            record.synthetic = True
    return manifest
