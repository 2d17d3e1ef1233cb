"""The prompts component (component.py)."""
