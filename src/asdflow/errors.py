"""Errors that reach the user as one clear line (the CLI prints `str(err)`, no traceback)."""


class AsdflowError(Exception):
    """Base for every error meant for the user: the message says what and where."""


class ConfigError(AsdflowError):
    """A config file is missing, malformed, or fails validation."""


class AudioError(AsdflowError):
    """An audio file cannot be read or is not usable (corrupt, empty, NaN...)."""


class DataError(AsdflowError):
    """A dataset folder is missing, empty, or not in the DCASE layout."""


class EvaluationError(AsdflowError):
    """Scores cannot be evaluated (names differ from ground truth, a domain lacks a class...)."""


class DetectorError(AsdflowError):
    """A detector cannot be trained, loaded or asked to score."""
