"""Prompt synthesis (asdflow prompts): strategies, CLAP backends and checkpoints.

A prompt table has one row per clip and strategy: clip (the manifest's file name),
machine_type, strategy, text, score (the CLAP similarity for clap_ranked, NaN otherwise).

- template: "The normal condition machine sound of {machine_type}." for every clip;
- spectral: the six statistics of asdflow.features.spectral_stats, in quantile bins
  per machine type, as readable text;
- metadata: a caption from the file-name attributes; a clip without attributes gets
  no metadata row (nothing is made up);
- clap_ranked: candidate captions from a `Captioner`, each scored by CLAP audio-text
  cosine similarity averaged over the configured checkpoints; the best is kept.

`asdflow.config` imports `asdflow.prompts.config`, which runs this file first: the
public names are therefore resolved lazily, so reading a config never imports
pandas, torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asdflow.prompts.table import PromptRun, build_prompt_table, write_prompt_table

_LAZY = {
    "build_prompt_table": "asdflow.prompts.table",
    "write_prompt_table": "asdflow.prompts.table",
    "PromptRun": "asdflow.prompts.table",
}

__all__ = ["PromptRun", "build_prompt_table", "write_prompt_table"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asdflow.prompts' has no attribute {name!r}")
