"""Quality checks on generated clips, logged to MLflow.

Per machine type: level (RMS dBFS) and clipping ratio per clip; exact
duplicates (same md5) and near duplicates (cosine similarity of embeddings
above `near_duplicate_cosine`); CLAP audio-text similarity of each clip to its
own prompt (averaged over the given CLAP scorers); and a Frechet distance
(FAD-style: means and covariances of embeddings, `scipy.linalg.sqrtm`) between
the synthetic clips and the real normal training clips of the machine type,
overall and per prompt strategy.

Embeddings are the first CLAP scorer's audio embeddings; without a scorer, a
log-mel statistics embedding (per-band mean and standard deviation of the
Tango log-mel, 128 numbers) stands in, and the report says which was used.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from asdflow.config import AsdflowConfig
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError


class QualityReport(BaseModel):
    machine_type: str
    n_clips: int
    n_real: int
    embedding: str  # "clap:<name>" or "logmel_stats"
    level_dbfs_mean: float
    level_dbfs_min: float
    level_dbfs_max: float
    clipping_ratio_mean: float
    clipping_ratio_max: float
    n_clipped_clips: int  # clips with any sample at or above the clipping level
    exact_duplicate_groups: list[list[str]] = Field(default_factory=list)
    near_duplicate_pairs: list[tuple[str, str, float]] = Field(default_factory=list)
    clap_similarity_mean: float | None = None
    clap_similarity_by_strategy: dict[str, float] = Field(default_factory=dict)
    frechet_distance: float | None = None
    frechet_by_strategy: dict[str, float] = Field(default_factory=dict)
    real_vs_real_frechet: float | None = None  # two halves of the real clips: the scale of "close"
    per_clip_csv: str | None = None
    mlflow_run_id: str | None = None

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow (synth_ prefix)."""
        values: dict[str, float | None] = {
            "n_clips": self.n_clips, "level_dbfs_mean": self.level_dbfs_mean,
            "clipping_ratio_mean": self.clipping_ratio_mean, "clipping_ratio_max": self.clipping_ratio_max,
            "n_clipped_clips": self.n_clipped_clips,
            "n_exact_duplicates": sum(len(g) - 1 for g in self.exact_duplicate_groups),
            "n_near_duplicate_pairs": len(self.near_duplicate_pairs),
            "clap_similarity_mean": self.clap_similarity_mean, "frechet_distance": self.frechet_distance,
            "real_vs_real_frechet": self.real_vs_real_frechet,
        }
        values.update({f"clap_similarity_{k}": v for k, v in self.clap_similarity_by_strategy.items()})
        values.update({f"frechet_{k}": v for k, v in self.frechet_by_strategy.items()})
        return {f"synth_{k}": float(v) for k, v in values.items() if v is not None and np.isfinite(v)}


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two embedding sets (rows), as FAD computes it."""
    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise DataError(f"Frechet distance needs at least 2 embeddings per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    with warnings.catch_warnings():  # a singular product is handled just below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(covmean)) or np.abs(np.imag(covmean)).max(initial=0) > 1e-3 * max(np.abs(covmean).max(), 1e-12):  # singular product (few clips): regularise, as the FAD reference does
        offset = np.eye(len(cov_a)) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean), 0.0))


def logmel_embeddings(waves: Sequence[np.ndarray], config: AsdflowConfig) -> np.ndarray:
    """Per-band mean and std of the Tango log-mel: a cheap stand-in embedding when no CLAP is given."""
    import torch

    from asdflow.synthesis.mel import MelFrontEnd

    synth = config.synthesis
    front = MelFrontEnd(synth.sample_rate, synth.n_fft, synth.hop_length, synth.n_mels)
    rows = []
    with torch.no_grad():
        for wav in waves:
            frames = max(1, len(wav) // synth.hop_length + 1)
            mel = front(torch.from_numpy(np.asarray(wav, dtype=np.float32))[None], frames)[0, 0].numpy()
            rows.append(np.concatenate([mel.mean(0), mel.std(0)]))
    emb = np.asarray(rows)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def quality_report(
    generated: str | Path | Manifest,
    real: Manifest,
    machine_type: str,
    config: AsdflowConfig,
    *,
    scorers: Sequence[Any] | None = None,
    out_dir: str | Path | None = None,
    log_to_mlflow: bool = True,
    run_id: str | None = None,
    project_dir: str | Path | None = None,
) -> QualityReport:
    """Check the generated clips of `machine_type` against its real normal training clips.

    generated: a generated root (with metadata.csv per machine type) or its manifest.
    scorers: CLAP scorers (asdflow.prompts.clap); similarity is averaged over them, the
    first one's audio embeddings serve near duplicates and the Frechet distance.
    out_dir: where quality.json and quality_clips.csv go (also logged as artifacts).
    """
    from asdflow.data.audio import load_audio, md5_of
    from asdflow.synthesis.finetune import real_normal_records
    from asdflow.synthesis.generate import read_metadata, synthetic_manifest

    synth = config.synthesis
    root = Path(generated.root) if isinstance(generated, Manifest) else Path(generated)
    gen_manifest = generated if isinstance(generated, Manifest) else synthetic_manifest(root)
    gen_records = [r for r in gen_manifest.records if r.machine_type == machine_type and r.synthetic]
    if not gen_records:
        raise DataError(f"no generated {machine_type} clips in {root}")
    metadata = read_metadata(root)
    by_clip = {Path(str(c)).name: row for c, row in zip(metadata["clip"], metadata.to_dict("records"))}
    real_records = real_normal_records(real, machine_type)

    sr = synth.sample_rate
    waves = [load_audio(r.path, sr) for r in gen_records]
    real_waves = [load_audio(r.path, sr) for r in real_records]
    rows = []
    for record, wav in zip(gen_records, waves):
        meta = by_clip.get(record.name, {})
        rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
        rows.append({"clip": record.name, "strategy": meta.get("strategy", ""), "prompt": meta.get("prompt", ""),
                     "level_dbfs": 20 * np.log10(max(rms, 1e-10)),
                     "clipping_ratio": float(np.mean(np.abs(wav) >= synth.clipping_level)),
                     "md5": record.md5 or md5_of(record.path)})
    frame = pd.DataFrame(rows)

    if scorers:
        first, prompts = scorers[0], list(frame["prompt"])
        emb, real_emb = first.embed_audio(waves, sr), first.embed_audio(real_waves, sr)
        embedding = f"clap:{getattr(first, 'name', 'clap')}"
        # the first scorer's audio embeddings are at hand: its similarity needs only the prompts embedded
        sims = [np.sum(emb * first.embed_text(prompts), axis=1), *(s.similarity(waves, sr, prompts) for s in scorers[1:])]
        frame["clap_similarity"] = np.mean(sims, axis=0)
    else:
        emb, real_emb = logmel_embeddings(waves, config), logmel_embeddings(real_waves, config)
        embedding = "logmel_stats"
        frame["clap_similarity"] = np.nan

    groups = [list(g["clip"]) for _, g in frame.groupby("md5") if len(g) > 1]
    cos = emb @ emb.T
    near = [(frame["clip"][i], frame["clip"][j], float(cos[i, j]))
            for i in range(len(frame)) for j in range(i + 1, len(frame))
            if cos[i, j] >= synth.near_duplicate_cosine and frame["md5"][i] != frame["md5"][j]]

    report = QualityReport(
        machine_type=machine_type, n_clips=len(frame), n_real=len(real_records), embedding=embedding,
        level_dbfs_mean=float(frame["level_dbfs"].mean()), level_dbfs_min=float(frame["level_dbfs"].min()),
        level_dbfs_max=float(frame["level_dbfs"].max()),
        clipping_ratio_mean=float(frame["clipping_ratio"].mean()),
        clipping_ratio_max=float(frame["clipping_ratio"].max()),
        n_clipped_clips=int((frame["clipping_ratio"] > 0).sum()),
        exact_duplicate_groups=groups, near_duplicate_pairs=near,
    )
    if scorers:
        report.clap_similarity_mean = float(frame["clap_similarity"].mean())
        report.clap_similarity_by_strategy = {
            s: float(g["clap_similarity"].mean()) for s, g in frame.groupby("strategy")}
    if len(real_emb) >= 2 and len(emb) >= 2:
        report.frechet_distance = frechet_distance(emb, real_emb)
        by_strategy: dict[str, list[int]] = defaultdict(list)
        for i, strategy in enumerate(frame["strategy"]):
            by_strategy[strategy].append(i)
        report.frechet_by_strategy = {s: frechet_distance(emb[idx], real_emb)
                                      for s, idx in by_strategy.items() if len(idx) >= 2}
        if len(real_emb) >= 4:
            half = len(real_emb) // 2
            report.real_vs_real_frechet = frechet_distance(real_emb[:half], real_emb[half:])

    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / f"quality_clips_{machine_type}.csv", index=False)
        report.per_clip_csv = str(out / f"quality_clips_{machine_type}.csv")
        (out / f"quality_{machine_type}.json").write_text(report.model_dump_json(indent=2))
    if log_to_mlflow:
        report.mlflow_run_id = log_quality(report, config, run_id=run_id, project_dir=project_dir)
        if out_dir is not None:
            (Path(out_dir) / f"quality_{machine_type}.json").write_text(report.model_dump_json(indent=2))
    return report


def log_quality(report: QualityReport, config: AsdflowConfig, run_id: str | None = None,
                project_dir: str | Path | None = None) -> str:
    """Metrics (synth_*) and the report (+ per-clip CSV) into `run_id` or a new run; returns the run id."""
    import mlflow

    from asdflow.registry.tracking import configure_tracking

    experiment_id = configure_tracking(config.tracking, project_dir)
    context = (mlflow.start_run(run_id=run_id) if run_id else
               mlflow.start_run(experiment_id=experiment_id, run_name=f"synthesis-quality-{report.machine_type}"))
    with context as run:
        mlflow.set_tags({"stage": "synthesis", "machine_type": report.machine_type, "embedding": report.embedding})
        mlflow.log_metrics(report.metrics())
        mlflow.log_dict(json.loads(report.model_dump_json()), f"synthesis/quality_{report.machine_type}.json")
        if report.per_clip_csv:
            mlflow.log_artifact(report.per_clip_csv, "synthesis")
        return run.info.run_id
