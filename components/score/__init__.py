"""The score component (component.py)."""
