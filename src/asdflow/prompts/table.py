"""The prompt table of one machine type: every clip, every strategy (asdflow.prompts).

Which clips: the machine type's clips in `prompts.splits` (default: train) that are
not anomalies, first `max_clips` by file name. Two passes over the audio:
1. statistics (only for the spectral and clap_ranked strategies): the six
   statistics per clip, then quantile levels within the machine type;
2. CLAP ranking (only for clap_ranked): per batch of clips, the captioner's
   candidates, audio and candidate texts embedded by every checkpoint, the
   similarity averaged over checkpoints, the best candidate kept with its score.
A clip that cannot be read gets no spectral or clap_ranked row and is listed in
`table.attrs["problems"]`; its template and metadata rows are kept.
A clip without file-name attributes gets no metadata row (nothing is made up).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from asdflow.config import AsdflowConfig
from asdflow.data.audio import load_audio
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.errors import AudioError, ConfigError, DataError
from asdflow.features.spectral_stats import STAT_NAMES, normalise_statistics, spectral_statistics
from asdflow.progress import progress_bar
from asdflow.prompts.captioner import Captioner, ClipContext, make_captioner
from asdflow.prompts.clap import ClapScorer, check_clap_checkpoints, load_clap_scorers, mean_similarity_matrix
from asdflow.prompts.config import STRATEGIES, PromptConfig
from asdflow.prompts.text import metadata_caption, spectral_text, template_text

log = logging.getLogger(__name__)

COLUMNS = ["clip", "machine_type", "strategy", "text", "score"]


def resolve_strategies(strategies: Sequence[str] | str | None, config: PromptConfig) -> list[str]:
    """The strategies to run, in the canonical order; "a,b" text is split. Unknown ones: ConfigError."""
    if strategies is None:
        chosen = list(config.strategies)
    else:
        items = [strategies] if isinstance(strategies, str) else list(strategies)
        chosen = [s.strip() for item in items for s in item.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STRATEGIES]
    if unknown:
        raise ConfigError(f"unknown prompt strategy {unknown[0]!r}: choose from {', '.join(STRATEGIES)}")
    if not chosen:
        raise ConfigError(f"no prompt strategy chosen: choose from {', '.join(STRATEGIES)}")
    return [s for s in STRATEGIES if s in chosen]


def select_clips(manifest: Manifest, machine_type: str, config: PromptConfig) -> list[ClipRecord]:
    records = sorted(
        (r for r in manifest.records
         if r.machine_type == machine_type and r.split in config.splits and r.label != "anomaly"),
        key=lambda r: r.name,
    )
    if not records:
        raise DataError(f"no normal clips of machine type {machine_type!r} in splits {config.splits} of "
                        f"{manifest.root or 'the manifest'} (machine types there: {manifest.machine_types() or 'none'})")
    return records[: config.max_clips] if config.max_clips else records


def clip_statistics(records: Sequence[ClipRecord], config: PromptConfig, progress: bool) -> tuple[pd.DataFrame, list[dict]]:
    """Six statistics per readable clip, with `<stat>_level`/`<stat>_quantile` within the machine type."""
    rows, problems = [], []
    for record in progress_bar(records, desc="spectral statistics", enabled=progress):
        try:
            wav = load_audio(record.path, target_sr=config.sample_rate)
            stats = spectral_statistics(wav, config.sample_rate, config.spectral.n_fft, config.spectral.hop_length)
        except AudioError as err:
            log.warning("prompts: %s", err)
            problems.append({"clip": record.name, "path": record.path, "reason": str(err)})
            continue
        rows.append({"clip": record.name, "machine_type": record.machine_type, **stats})
    frame = pd.DataFrame(rows, columns=["clip", "machine_type", *STAT_NAMES])
    return normalise_statistics(frame, by="machine_type", n_bins=config.spectral.n_bins), problems


def clip_context(record: ClipRecord, stats: pd.DataFrame) -> ClipContext:
    """What the captioner knows of a clip: its attributes and, when computed, its statistics' levels
    (`stats` indexed by clip name, as `clip_statistics` returns it after `set_index("clip")`)."""
    levels: dict[str, str] = {}
    quantiles: dict[str, float] = {}
    if record.name in stats.index:
        row = stats.loc[record.name]
        levels = {n: str(row[f"{n}_level"]) for n in STAT_NAMES}
        quantiles = {n: float(row[f"{n}_quantile"]) for n in STAT_NAMES}
    return ClipContext(record.name, record.machine_type, dict(record.attributes), levels, quantiles)


def rank_captions(records: Sequence[ClipRecord], stats: pd.DataFrame, captioner: Captioner,
                  scorers: Sequence[ClapScorer], config: PromptConfig, progress: bool) -> tuple[list[dict], list[dict]]:
    """The best candidate of each readable clip and its CLAP score averaged over `scorers`."""
    rows, problems = [], []
    batch_size = config.clap.batch_size
    batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
    for batch in progress_bar(batches, desc=f"CLAP ranking ({len(scorers)} checkpoint(s))", enabled=progress):
        waves, contexts, candidates = [], [], []
        for record in batch:
            try:
                wav = load_audio(record.path, target_sr=config.sample_rate)
            except AudioError as err:
                problems.append({"clip": record.name, "path": record.path, "reason": str(err)})
                continue
            context = clip_context(record, stats)
            texts = captioner.candidates(context, wav, config.sample_rate)
            if not texts:
                problems.append({"clip": record.name, "path": record.path, "reason": "the captioner gave no candidate"})
                continue
            waves.append(wav)
            contexts.append(context)
            candidates.append(texts)
        if not waves:
            continue
        unique = list(dict.fromkeys(t for texts in candidates for t in texts))
        similarity = mean_similarity_matrix(scorers, waves, config.sample_rate, unique)
        column = {t: j for j, t in enumerate(unique)}
        for i, (context, texts) in enumerate(zip(contexts, candidates)):
            scores = similarity[i, [column[t] for t in texts]]
            best = int(np.argmax(scores))  # ties: the first candidate (the captioner's order)
            rows.append({"clip": context.name, "machine_type": context.machine_type, "strategy": "clap_ranked",
                         "text": texts[best], "score": float(scores[best])})
    return rows, problems


def build_prompt_table(
    manifest: Manifest,
    machine_type: str,
    config: AsdflowConfig,
    strategies: Sequence[str] | str | None = None,
    *,
    scorers: Sequence[ClapScorer] | None = None,
    captioner: Captioner | None = None,
) -> pd.DataFrame:
    """Columns clip, machine_type, strategy, text, score (NaN except clap_ranked); rows by clip, then strategy.

    `scorers`/`captioner`: already built ones (default: from `config.prompts`).
    `attrs`: "problems" (unreadable clips), "statistics" (the per-clip statistics
    and levels, when computed), "clap_checkpoints" (scorer names), "strategies",
    "n_clips", "clips_without_attributes".
    """
    cfg = config.prompts
    chosen = resolve_strategies(strategies, cfg)
    records = select_clips(manifest, machine_type, cfg)
    progress = config.progress
    if "clap_ranked" in chosen and scorers is None:
        check_clap_checkpoints(cfg.clap)  # a missing file fails before any audio is read
    rows: list[dict[str, Any]] = []
    problems: list[dict] = []
    stats = pd.DataFrame(columns=["clip", "machine_type", *STAT_NAMES])
    if {"spectral", "clap_ranked"} & set(chosen):
        stats, problems = clip_statistics(records, cfg, progress)
    by_clip = stats.set_index("clip", drop=False)

    for record in records:
        if "template" in chosen:
            rows.append({"clip": record.name, "strategy": "template", "text": template_text(machine_type, cfg.template)})
        if "spectral" in chosen and record.name in by_clip.index:
            levels = {n: by_clip.at[record.name, f"{n}_level"] for n in STAT_NAMES}
            rows.append({"clip": record.name, "strategy": "spectral",
                         "text": spectral_text(machine_type, levels, cfg.template)})
        if "metadata" in chosen and (caption := metadata_caption(machine_type, record.attributes)):
            rows.append({"clip": record.name, "strategy": "metadata", "text": caption})

    names: list[str] = []
    if "clap_ranked" in chosen:
        unread = {p["clip"] for p in problems}
        scorers = list(scorers) if scorers is not None else load_clap_scorers(cfg)
        names = [getattr(s, "name", type(s).__name__) for s in scorers]
        captioner = captioner or make_captioner(cfg.captioner, cfg.template)
        readable = [r for r in records if r.name not in unread]
        ranked, more = rank_captions(readable, by_clip, captioner, scorers, cfg, progress)
        rows.extend(ranked)
        problems.extend(more)

    table = pd.DataFrame(rows, columns=COLUMNS)
    table["machine_type"] = machine_type
    table["score"] = table["score"].astype(float)
    order = {s: i for i, s in enumerate(STRATEGIES)}
    table = table.sort_values(["clip", "strategy"], key=lambda c: c.map(order) if c.name == "strategy" else c,
                              kind="stable").reset_index(drop=True)
    table.attrs.update({"problems": problems, "statistics": stats, "clap_checkpoints": names,
                        "strategies": chosen, "n_clips": len(records),
                        "clips_without_attributes": sum(1 for r in records if not r.attributes)})
    return table


@dataclass
class PromptRun:
    """What `write_prompt_table` wrote."""

    table: pd.DataFrame
    csv: Path
    summary_path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        s = self.summary
        counts = ", ".join(f"{k} {v}" for k, v in s["rows_per_strategy"].items())
        lines = [f"prompts for {s['machine_type']}: {s['n_clips']} clips, {len(self.table)} rows ({counts}) -> {self.csv}"]
        if s.get("clap"):
            lines.append(f"CLAP over {', '.join(s['clap']['checkpoints'])}: mean best score {s['clap']['mean_best_score']:.3f}")
        if s["clips_without_attributes"] and "metadata" in s["strategies"]:
            lines.append(f"{s['clips_without_attributes']} clip(s) have no file-name attributes: no metadata prompt")
        lines += [f"skipped {p['clip']}: {p['reason']}" for p in s["problems"]]
        return "\n".join(lines)


def write_prompt_table(
    out_dir: str | Path,
    machine_type: str,
    config: AsdflowConfig,
    *,
    manifest: Manifest | str | Path | None = None,
    data_dir: str | Path | None = None,
    strategies: Sequence[str] | str | None = None,
    scorers: Sequence[ClapScorer] | None = None,
    captioner: Captioner | None = None,
) -> PromptRun:
    """Build the table from a manifest (object, or its folder/CSV) or a DCASE-layout `data_dir`, and write
    `prompts.csv`, `prompts_summary.json` and, when computed, `spectral_statistics.csv` into `out_dir`."""
    started = time.perf_counter()
    if manifest is None:
        if data_dir is None:
            raise DataError("write_prompt_table: give a manifest or a data directory")
        from asdflow.data.dcase_reader import build_manifest

        manifest = build_manifest(data_dir, machine_types=[machine_type], compute_md5=False, progress=config.progress)
    elif not isinstance(manifest, Manifest):
        manifest = Manifest.load(manifest)
    table = build_prompt_table(manifest, machine_type, config, strategies, scorers=scorers, captioner=captioner)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "prompts.csv"
    table.to_csv(csv, index=False)
    stats = table.attrs["statistics"]
    if len(stats):
        stats.to_csv(out / "spectral_statistics.csv", index=False)
    clap_scores = table.loc[table["strategy"] == "clap_ranked", "score"]
    summary: dict[str, Any] = {
        "machine_type": machine_type,
        "strategies": table.attrs["strategies"],
        "n_clips": table.attrs["n_clips"],
        "rows_per_strategy": {s: int(n) for s, n in Counter(table["strategy"]).items()},
        "clips_without_attributes": table.attrs["clips_without_attributes"],
        "clap": {"checkpoints": table.attrs["clap_checkpoints"], "mean_best_score": float(clap_scores.mean()),
                 "min_best_score": float(clap_scores.min()), "max_best_score": float(clap_scores.max())}
        if len(clap_scores) else None,
        "problems": table.attrs["problems"],
        "seconds": round(time.perf_counter() - started, 3),
    }
    summary_path = out / "prompts_summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    return PromptRun(table=table, csv=csv, summary_path=summary_path, summary=summary)
