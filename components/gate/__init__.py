"""The gate component (component.py)."""
