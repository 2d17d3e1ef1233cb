"""Detector families behind one interface (`asdflow.detectors.base.Detector`)."""

from asdflow.detectors.base import Detector, available_families, load_detector, make_detector

__all__ = ["Detector", "available_families", "load_detector", "make_detector"]
