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


def one_line(err_or_text: BaseException | str) -> str:
    """The first non-empty line of a message, stripped (an exception's `message` attribute, as MLflow's
    have, or its str); an exception without text gives its class name, text without content ""."""
    if isinstance(err_or_text, BaseException):
        text = str(getattr(err_or_text, "message", None) or err_or_text)
        fallback = type(err_or_text).__name__
    else:
        text, fallback = str(err_or_text), ""
    return next((line.strip() for line in text.splitlines() if line.strip()), fallback)
