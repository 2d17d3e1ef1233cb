"""Prompt synthesis (asdflow prompts): strategies, CLAP backends and checkpoints.

Imported by asdflow.config: keep this module free of heavy imports.
Class defaults are the report's full settings (laion_clap, the two 630k checkpoints);
the tiny and demo profiles switch CLAP to a randomly initialised tiny model, since
no CLAP weights exist on those machines (the code path is the same, the scores
carry no meaning there).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from asdflow.config_base import StrictModel

STRATEGIES: tuple[str, ...] = ("template", "spectral", "metadata", "clap_ranked")
TEMPLATE = "The normal condition machine sound of {machine_type}."


class ClapCheckpointConfig(StrictModel):
    """One CLAP model; a candidate's score is its cosine similarity averaged over every checkpoint."""

    name: str  # shown in the summary, e.g. "630k-best"
    # laion_clap: CLAP_Module + load_ckpt(path); transformers: ClapModel + ClapProcessor from a local
    # directory or a hub id; random: a tiny randomly initialised transformers ClapModel (tests, CPU demo).
    backend: Literal["laion_clap", "transformers", "random"] = "laion_clap"
    path: str = ""  # laion_clap: the .pt file; transformers: a directory or hub id; random: unused
    amodel: str = "HTSAT-tiny"  # laion_clap audio encoder the checkpoint was trained with
    enable_fusion: bool = False  # laion_clap: the 630k(-audioset)-best checkpoints are non-fusion
    seed: int = 0  # random backend: the initialisation seed


class ClapScoringConfig(StrictModel):
    checkpoints: list[ClapCheckpointConfig] = Field(
        default_factory=lambda: [
            ClapCheckpointConfig(name="630k-best", path="models/clap/630k-best.pt"),
            ClapCheckpointConfig(name="630k-audioset-best", path="models/clap/630k-audioset-best.pt"),
        ],
        min_length=1,
    )
    # laion_clap builds its text branch and tokenizer with from_pretrained("roberta-base") (hard-coded):
    # a local directory holding that RoBERTa model + tokenizer makes it load offline (None: the HF cache/hub).
    roberta_dir: str | None = None
    device: str = "auto"  # "auto": cuda when available, else cpu
    batch_size: int = Field(8, ge=1)  # clips (and texts) per forward pass
    max_seconds: float = Field(10.0, gt=0)  # audio longer than this is cut (from the start: deterministic)
    num_threads: int | None = 1  # torch intra-op threads while scoring on CPU (None: torch's default)


class CaptionerConfig(StrictModel):
    """Where the clap_ranked strategy gets its candidate captions from."""

    # candidates: phrasings built from the clip's attributes and spectral statistics;
    # pipeline: a real audio-language model through `transformers.pipeline(task, model=model)`.
    kind: Literal["candidates", "pipeline"] = "candidates"
    model: str | None = None  # pipeline: a local directory or hub id (e.g. an audio captioning checkpoint)
    task: str = "automatic-speech-recognition"  # pipeline task; whisper-style captioners use this one
    n_candidates: int = Field(6, ge=1)  # at most this many candidates per clip
    # pipeline: passed to the model's generate, e.g. {num_beams: 6, num_return_sequences: 6} for several captions
    generate_kwargs: dict[str, Any] = Field(default_factory=dict)
    also_builtin: bool = True  # pipeline: rank the built-in candidates beside the model's


class SpectralPromptConfig(StrictModel):
    n_bins: int = Field(5, ge=2, le=7)  # quantile bins per machine type ("very low" .. "very high")
    n_fft: int = 1024
    hop_length: int = 512


class PromptConfig(StrictModel):
    """Prompt synthesis (asdflow prompts): strategies, CLAP backends and checkpoints."""

    strategies: list[str] = Field(default_factory=lambda: list(STRATEGIES), min_length=1)
    template: str = TEMPLATE  # {machine_type} is replaced by the readable machine name
    splits: list[Literal["train", "test", "supplemental"]] = Field(default_factory=lambda: ["train"], min_length=1)
    max_clips: int | None = Field(None, ge=1)  # per machine type, first by file name (None: every clip)
    sample_rate: int = 16000  # clips are read at this rate (statistics; CLAP resamples to its own)
    spectral: SpectralPromptConfig = Field(default_factory=SpectralPromptConfig)
    captioner: CaptionerConfig = Field(default_factory=CaptionerConfig)
    clap: ClapScoringConfig = Field(default_factory=ClapScoringConfig)

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown prompt strategy {unknown[0]!r}: choose from {', '.join(STRATEGIES)}")
        return list(dict.fromkeys(names))

    @field_validator("template")
    @classmethod
    def _template_names_machine(cls, template: str) -> str:
        if "{machine_type}" not in template:
            raise ValueError("the template must contain {machine_type}")
        return template
