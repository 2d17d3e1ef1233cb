"""The train component (component.py)."""
