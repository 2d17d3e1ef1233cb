"""The validate component (component.py)."""
