"""The denoise component (component.py)."""
