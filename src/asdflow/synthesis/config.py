"""Tango text-to-audio: model sizes or pretrained paths, fine-tuning, generation.

Imported by asdflow.config: keep this module free of heavy imports.
"""

from asdflow.config_base import StrictModel


class SynthesisConfig(StrictModel):
    """Tango text-to-audio: model sizes or pretrained paths, fine-tuning, generation."""
