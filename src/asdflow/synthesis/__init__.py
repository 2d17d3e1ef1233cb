"""Tango text-to-audio: model sizes or pretrained paths, fine-tuning, generation."""
