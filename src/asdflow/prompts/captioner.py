"""Candidate captions for the clap_ranked strategy: the `Captioner` interface and two captioners.

- `BuiltinCaptioner` (default): several phrasings from what is known of the clip,
  its file-name attributes and its spectral statistics' levels within its machine type.
- `PipelineCaptioner`: a real audio-language model through a transformers pipeline
  (`prompts.captioner.kind: pipeline`, `model:` a local directory or hub id), with
  the built-in candidates beside its captions when `also_builtin` is on.
CLAP then ranks the candidates (asdflow.prompts.table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asdflow.errors import ConfigError, one_line
from asdflow.prompts.config import TEMPLATE, CaptionerConfig
from asdflow.prompts.text import (
    STAT_PHRASES,
    attribute_phrases,
    join_words,
    machine_phrase,
    metadata_caption,
    spectral_text,
    stat_word,
    template_text,
    with_article,
)


@dataclass(frozen=True)
class ClipContext:
    """What a captioner may know of a clip besides its audio."""

    name: str
    machine_type: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    levels: Mapping[str, str] = field(default_factory=dict)  # statistic -> "very low" .. "very high"
    quantiles: Mapping[str, float] = field(default_factory=dict)  # statistic -> quantile in its machine type


@runtime_checkable
class Captioner(Protocol):
    def candidates(self, clip: ClipContext, waveform: np.ndarray, sample_rate: int) -> list[str]:
        """Candidate captions of one clip (distinct, best guesses first; may be empty)."""
        ...


def _distinct(texts: list[str], limit: int) -> list[str]:
    seen: dict[str, None] = {}
    for text in texts:
        text = " ".join(str(text).split())
        if text and text not in seen:
            seen[text] = None
    return list(seen)[:limit]


@dataclass
class BuiltinCaptioner:
    """Phrasings from attributes and statistics (it does not listen: the audio argument is unused)."""

    n_candidates: int = 6
    template: str = TEMPLATE

    def candidates(self, clip: ClipContext, waveform: np.ndarray | None = None, sample_rate: int | None = None) -> list[str]:
        machine = machine_phrase(clip.machine_type)
        described, recording = attribute_phrases(clip.attributes)
        with_attrs = f" with {join_words(described)}" if described else ""
        recorded = f", recorded by {join_words(recording)}" if recording else ""
        texts = [template_text(clip.machine_type, self.template), metadata_caption(clip.machine_type, clip.attributes)]
        if clip.levels:
            texts.append(spectral_text(clip.machine_type, clip.levels, self.template))
        if clip.quantiles:
            q = clip.quantiles
            word = {name: stat_word(name, q[name]) for name in STAT_PHRASES if name in q}
            if {"rms", "centroid", "flatness"} <= word.keys():
                texts.append(f"{with_article(machine).capitalize()}{with_attrs} running normally: "
                             f"{word['rms']}, {word['centroid']} and {word['flatness']}.")
            if {"flux", "kurtosis"} <= word.keys():
                texts.append(f"{word['flux'].capitalize()}, {word['kurtosis']} machine noise of "
                             f"{with_article(machine)}{with_attrs}{recorded}.")
            if clip.levels:
                # the two statistics furthest from their machine type's median say most about this clip
                extreme = sorted((n for n in STAT_PHRASES if n in q and n in clip.levels), key=lambda n: -abs(q[n] - 0.5))[:2]
                parts = [f"{clip.levels[n]} {STAT_PHRASES[n]}" for n in extreme]
                texts.append(f"The normal sound of {with_article(machine)}{with_attrs}, with {join_words(parts)}.")
        return _distinct([t for t in texts if t], self.n_candidates)


@dataclass
class PipelineCaptioner:
    """Captions from an audio-language model called as `pipe({"raw": wav, "sampling_rate": sr}, **call_kwargs)`.

    Any callable with the transformers pipeline convention works (a dict or a list
    of dicts with "text" or "generated_text"); `from_config` builds the real one.
    """

    pipe: Callable[..., Any]
    n_candidates: int = 6
    builtin: BuiltinCaptioner | None = None
    call_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: CaptionerConfig, template: str = TEMPLATE) -> PipelineCaptioner:
        if not config.model:
            raise ConfigError("prompts.captioner.model: kind 'pipeline' needs a model (a local directory or hub id)")
        if config.model.startswith(("/", ".", "~")) and not Path(config.model).expanduser().exists():
            raise ConfigError(f"prompts.captioner.model not found: {config.model}")
        import transformers

        try:
            pipe = transformers.pipeline(config.task, model=config.model)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"prompts.captioner: cannot build the {config.task!r} pipeline from {config.model!r} "
                              f"({one_line(err)})") from None
        builtin = BuiltinCaptioner(config.n_candidates, template) if config.also_builtin else None
        call = {"generate_kwargs": dict(config.generate_kwargs)} if config.generate_kwargs else {}
        return cls(pipe, config.n_candidates, builtin, call)

    def candidates(self, clip: ClipContext, waveform: np.ndarray, sample_rate: int) -> list[str]:
        output = self.pipe({"raw": np.asarray(waveform, dtype=np.float32), "sampling_rate": sample_rate}, **self.call_kwargs)
        items = output if isinstance(output, list) else [output]
        captions = [(item.get("text") or item.get("generated_text") or "") if isinstance(item, Mapping) else str(item)
                    for item in items]
        heard = _distinct(captions, self.n_candidates)
        extra = self.builtin.candidates(clip) if self.builtin else []
        return _distinct(heard + extra, len(heard) + len(extra))


def make_captioner(config: CaptionerConfig, template: str = TEMPLATE) -> Captioner:
    if config.kind == "pipeline":
        return PipelineCaptioner.from_config(config, template)
    return BuiltinCaptioner(config.n_candidates, template)
