"""The separation_train component (component.py)."""
