"""Detector families behind one interface (`asdflow.detectors.base.Detector`).

The names below load lazily: asdflow.config imports `asdflow.detectors.family_configs`,
and an eager `base` import here would be a cycle (base needs the config).
"""

__all__ = ["Detector", "available_families", "load_detector", "make_detector"]


def __getattr__(name: str):
    if name in __all__:
        from asdflow.detectors import base

        return getattr(base, name)
    raise AttributeError(f"module 'asdflow.detectors' has no attribute {name!r}")
