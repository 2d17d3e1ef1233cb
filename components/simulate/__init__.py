"""The simulate component (component.py)."""
