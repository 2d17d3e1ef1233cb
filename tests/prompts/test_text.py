"""Readable text from names, attributes and statistic levels."""

from __future__ import annotations

import pytest

from asdflow.prompts.captioner import BuiltinCaptioner, ClipContext
from asdflow.prompts.text import machine_phrase, metadata_caption, spectral_text, template_text


@pytest.mark.parametrize("machine, phrase", [
    ("ToyCar", "toy car"), ("slider", "slide rail"), ("valve", "valve"), ("BrushlessMotor", "brushless motor"),
    ("my_machine-type", "my machine type"),
])
def test_machine_phrases(machine, phrase):
    assert machine_phrase(machine) == phrase


def test_template_is_the_reports_sentence():
    assert template_text("valve") == "The normal condition machine sound of valve."


def test_metadata_caption_of_a_toy_car_reads_like_the_report():
    caption = metadata_caption("ToyCar", {"car": "B2", "spd": "31V", "mic": "1"})
    assert caption == "This is the normal sound of a toy car with model B2 and speed 31V, recorded by microphone 1."


def test_metadata_caption_maps_known_keys_and_falls_back_to_key_value():
    assert metadata_caption("gearbox", {"volt": "1.5", "wt": "30"}) == \
        "This is the normal sound of a gearbox with voltage 1.5 and weight 30."
    assert metadata_caption("fan", {"m-n": "X"}) == "This is the normal sound of a fan with m-n X."
    # a value-less trailing token (2021 style) reads as the word; a repeated key keeps its meaning
    assert metadata_caption("fan", {"strength": "1", "tag": "ambient"}) == \
        "This is the normal sound of a fan with strength 1 and ambient."
    assert metadata_caption("valve", {"pat": "01", "pat_2": "02"}) == \
        "This is the normal sound of a valve with pattern 01 and pattern 02."
    assert metadata_caption("AirCompressor", {"mic": "2"}) == \
        "This is the normal sound of an air compressor, recorded by microphone 2."


def test_no_attributes_no_caption():
    assert metadata_caption("fan", {}) is None


def test_spectral_text_names_all_six_levels_in_order():
    levels = {"flux": "low", "centroid": "high", "flatness": "medium", "kurtosis": "very low", "rms": "very high",
              "zcr": "low"}
    assert spectral_text("valve", levels) == (
        "The normal condition machine sound of valve, with low spectral flux, high spectral centroid, medium spectral "
        "flatness, very low kurtosis, very high RMS level and low zero-crossing rate.")


def test_builtin_candidates_are_distinct_phrasings_of_attributes_and_statistics():
    quantiles = {"flux": 0.1, "centroid": 0.9, "flatness": 0.5, "kurtosis": 0.45, "rms": 0.95, "zcr": 0.3}
    levels = {n: ("low" if q < 0.4 else "high" if q > 0.6 else "medium") for n, q in quantiles.items()}
    clip = ClipContext("x.wav", "ToyCar", {"car": "C2", "spd": "31V", "mic": "1"}, levels, quantiles)
    texts = BuiltinCaptioner(n_candidates=10).candidates(clip)
    assert len(texts) == len(set(texts)) == 6
    assert texts[0] == "The normal condition machine sound of toy car."
    assert "This is the normal sound of a toy car with model C2 and speed 31V, recorded by microphone 1." in texts
    assert "A toy car with model C2 and speed 31V running normally: loud, high-pitched and partly tonal." in texts
    assert "Steady, partly impulsive" not in " ".join(texts)
    # the two statistics furthest from the median: rms (0.95) and flux (0.1)
    assert "The normal sound of a toy car with model C2 and speed 31V, with high RMS level and low spectral flux." in texts
    assert len(BuiltinCaptioner(n_candidates=2).candidates(clip)) == 2
    # nothing known but the machine: the template alone
    assert BuiltinCaptioner().candidates(ClipContext("y.wav", "fan")) == ["The normal condition machine sound of fan."]
