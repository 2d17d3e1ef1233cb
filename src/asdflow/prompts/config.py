"""Prompt synthesis (asdflow prompts): strategies, CLAP backends and checkpoints.

Imported by asdflow.config: keep this module free of heavy imports.
"""

from asdflow.config_base import StrictModel


class PromptConfig(StrictModel):
    """Prompt synthesis (asdflow prompts): strategies, CLAP backends and checkpoints."""
