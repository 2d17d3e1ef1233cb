"""Readable text from what a clip's name and statistics say: machine names, attributes, levels.

Pure string functions (no audio, no models), shared by the strategies and the
default captioner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from asdflow.data.naming import TRAILING_TOKEN_KEY
from asdflow.prompts.config import TEMPLATE

# DCASE machine type folder -> how a sentence names it. Unknown names are split
# at CamelCase, '-' and '_' and lower-cased ("BrushlessMotor" -> "brushless motor").
MACHINE_NAMES: dict[str, str] = {
    "ToyCar": "toy car",
    "ToyTrain": "toy train",
    "ToyConveyor": "toy conveyor",
    "slider": "slide rail",
    "3DPrinter": "3D printer",
    "ToothBrush": "toothbrush",
    "HoveringDrone": "hovering drone",
    "RoboticArm": "robotic arm",
    "AirCompressor": "air compressor",
    "HairDryer": "hair dryer",
}

# DCASE file-name attribute keys (2021-2024 development and evaluation sets, plus the synthetic
# generator's) -> the words for "with <words> <value>". A key not listed reads "with <key> <value>".
ATTRIBUTE_NAMES: dict[str, str] = {
    "car": "model",
    "spd": "speed",
    "speed": "speed",
    "vel": "velocity",
    "ac": "acceleration",
    "loc": "location",
    "volt": "voltage",
    "wt": "weight",
    "pat": "pattern",
    "panel": "panel",
    "v1pat": "valve 1 pattern",
    "v2pat": "valve 2 pattern",
    "load": "load",
    "noise": "noise",
    "f-n": "factory noise",
    "bg": "background",
    "id": "id",
}
# Keys that say how the clip was recorded, put at the end: "..., recorded by microphone 1."
RECORDING_KEYS: dict[str, str] = {"mic": "microphone"}

# The six statistics (asdflow.features.spectral_stats.STAT_NAMES) as nouns of a sentence.
STAT_PHRASES: dict[str, str] = {
    "flux": "spectral flux",
    "centroid": "spectral centroid",
    "flatness": "spectral flatness",
    "kurtosis": "kurtosis",
    "rms": "RMS level",
    "zcr": "zero-crossing rate",
}

# Plain-language words for a statistic's quantile within its machine type: (low, middle, high) thirds.
STAT_WORDS: dict[str, tuple[str, str, str]] = {
    "rms": ("quiet", "moderately loud", "loud"),
    "centroid": ("low-pitched", "mid-pitched", "high-pitched"),
    "flatness": ("tonal", "partly tonal", "noise-like"),
    "flux": ("steady", "slowly varying", "fluctuating"),
    "kurtosis": ("smooth", "slightly impulsive", "impulsive"),
    "zcr": ("dull", "moderately bright", "hissy"),
}


def machine_phrase(machine_type: str) -> str:
    """The machine as a sentence names it: "ToyCar" -> "toy car", "valve" -> "valve"."""
    if machine_type in MACHINE_NAMES:
        return MACHINE_NAMES[machine_type]
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", machine_type)
    return " ".join(part.lower() for part in re.split(r"[\s_\-]+", spaced) if part)


def with_article(phrase: str) -> str:
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def join_words(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def template_text(machine_type: str, template: str = TEMPLATE) -> str:
    return template.format(machine_type=machine_phrase(machine_type))


def attribute_phrases(attributes: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """("model B2", "speed 31V") and the recording clauses ("microphone 1"), in file-name order."""
    described, recording = [], []
    for key, value in attributes.items():
        base = re.sub(r"_\d+$", "", key)  # the reader renames a repeated key "k" to "k_2"
        if base in RECORDING_KEYS:
            recording.append(f"{RECORDING_KEYS[base]} {value}")
        elif base == TRAILING_TOKEN_KEY:  # a value-less token of the name ("..._ambient"): the word alone
            described.append(value)
        else:
            described.append(f"{ATTRIBUTE_NAMES.get(base, base)} {value}")
    return described, recording


def metadata_caption(machine_type: str, attributes: Mapping[str, str]) -> str | None:
    """"This is the normal sound of a toy car with model B2 and speed 31V, recorded by microphone 1."

    None when the clip has no attributes: the metadata strategy then yields no row.
    """
    if not attributes:
        return None
    described, recording = attribute_phrases(attributes)
    text = f"This is the normal sound of {with_article(machine_phrase(machine_type))}"
    if described:
        text += f" with {join_words(described)}"
    if recording:
        text += f", recorded by {join_words(recording)}"
    return text + "."


def spectral_text(machine_type: str, levels: Mapping[str, str], template: str = TEMPLATE) -> str:
    """"The normal condition machine sound of valve, with low spectral flux, high spectral centroid, ..."

    `levels`: statistic name -> its quantile label ("very low" .. "very high").
    """
    parts = [f"{levels[name]} {phrase}" for name, phrase in STAT_PHRASES.items() if name in levels]
    return f"{template_text(machine_type, template).rstrip('.')}, with {join_words(parts)}."


def stat_word(name: str, quantile: float) -> str:
    low, middle, high = STAT_WORDS[name]
    return low if quantile < 1 / 3 else middle if quantile < 2 / 3 else high
