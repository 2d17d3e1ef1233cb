"""The promote component (component.py)."""
