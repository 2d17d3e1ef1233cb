"""The fetch component (component.py)."""
