"""Prompt synthesis (asdflow prompts): strategies, CLAP backends and checkpoints."""
