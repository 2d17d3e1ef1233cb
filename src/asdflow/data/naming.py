"""Parse DCASE Task 2 clip names of every year into their fields.

Namings understood (the file extension `.wav` is matched case-insensitively):

- DCASE 2021 onwards (naming "dcase2021+"):
  `section_XX_{source|target}_{train|test}_{normal|anomaly}_NNNN[_<attrs>].wav`
- supplemental clips of this project (naming "supplemental"):
  `section_XX_{source|target}_supplemental_{clean|noise}_NNNN[_<attrs>].wav`
- unlabelled evaluation clips (naming "eval"): `section_XX_NNNN.wav`, the 2021
  form `section_XX_{source|target}_test_NNNN.wav` (its domain kept), and the
  2020 evaluation form `id_XX_NNNNNNNN.wav`
- DCASE 2020 (naming "dcase2020"): `{normal|anomaly}_id_XX_NNNNNNNN.wav`;
  the machine id becomes the section and the domain is "source" (2020 had no
  domain shift). The split is not in a 2020 name: it comes from the folder.

Attribute rule (the `_<attrs>` tail): tokens are split on "_" and paired left to
right as key, value (`car_A1_spd_28V_mic_1` -> car=A1, spd=28V, mic=1), kept in
their order. Values may contain "." or "-" (`volt_1.5`, `m-n_W`). Two cases are
not pairs:
- the DCASE 2024 marker `noAttribute` (or `noAttributes`) alone means the clip
  has no attributes: the dict is empty;
- an odd token count leaves a value-less trailing token (the 2021 style
  `strength_1_ambient`): it is stored under the key `tag` (`tag_2`, ... if taken).
A repeated key keeps its first value; later ones are stored as `key_2`, `key_3`.
The raw tail is kept in `ParsedName.attribute_string`, so nothing is lost.
A name with an empty token (`a__b`) or any other shape is not parsed (None).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

Naming = Literal["dcase2021+", "dcase2020", "eval", "supplemental"]

NO_ATTRIBUTE_MARKERS = frozenset({"noAttribute", "noAttributes"})
TRAILING_TOKEN_KEY = "tag"

_DCASE2021 = re.compile(
    r"^section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>train|test)_"
    r"(?P<label>normal|anomaly)_(?P<index>\d+)(?:_(?P<attrs>.+))?\.wav$",
    re.IGNORECASE,
)
_SUPPLEMENTAL = re.compile(
    r"^section_(?P<section>\d{2})_(?P<domain>source|target)_supplemental_"
    r"(?P<kind>clean|noise)_(?P<index>\d+)(?:_(?P<attrs>.+))?\.wav$",
    re.IGNORECASE,
)
_EVAL = re.compile(r"^(?:section|id)_(?P<section>\d{2})_(?P<index>\d+)\.wav$", re.IGNORECASE)
_EVAL2021 = re.compile(r"^section_(?P<section>\d{2})_(?P<domain>source|target)_test_(?P<index>\d+)\.wav$", re.IGNORECASE)
_DCASE2020 = re.compile(r"^(?P<label>normal|anomaly)_id_(?P<section>\d{2})_(?P<index>\d+)\.wav$", re.IGNORECASE)


class ParsedName(BaseModel):
    """What a clip's file name says; fields the name does not carry are None."""

    name: str
    naming: Naming
    section: str  # two digits
    index: str  # the clip number as written, leading zeros kept
    domain: Literal["source", "target"] | None = None
    split: Literal["train", "test", "supplemental"] | None = None  # None: only the folder says
    label: Literal["normal", "anomaly"] | None = None
    supplemental_kind: Literal["clean", "noise"] | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    attribute_string: str = ""


def parse_attributes(tail: str) -> dict[str, str] | None:
    """`k1_v1_k2_v2[_tag]` -> ordered dict by the rule in the module docstring; None if malformed."""
    if not tail:
        return {}
    tokens = tail.split("_")
    if any(token == "" for token in tokens):
        return None
    if len(tokens) == 1 and tokens[0] in NO_ATTRIBUTE_MARKERS:
        return {}
    attributes: dict[str, str] = {}
    pairs = [(tokens[i], tokens[i + 1]) for i in range(0, len(tokens) - 1, 2)]
    if len(tokens) % 2:
        pairs.append((TRAILING_TOKEN_KEY, tokens[-1]))
    for key, value in pairs:
        attributes[_free_key(attributes, key)] = value
    return attributes


def parse_clip_name(name: str) -> ParsedName | None:
    """Parse a file name (not a path) of any DCASE naming; None when it fits none."""
    if match := _DCASE2021.match(name):
        return _with_attributes(
            match,
            name,
            naming="dcase2021+",
            domain=match["domain"].lower(),
            split=match["split"].lower(),
            label=match["label"].lower(),
        )
    if match := _SUPPLEMENTAL.match(name):
        return _with_attributes(
            match,
            name,
            naming="supplemental",
            domain=match["domain"].lower(),
            split="supplemental",
            supplemental_kind=match["kind"].lower(),
        )
    if match := _DCASE2020.match(name):
        return ParsedName(
            name=name,
            naming="dcase2020",
            section=match["section"],
            index=match["index"],
            domain="source",
            label=match["label"].lower(),
        )
    if match := _EVAL.match(name):
        return ParsedName(name=name, naming="eval", section=match["section"], index=match["index"], split="test")
    if match := _EVAL2021.match(name):
        return ParsedName(name=name, naming="eval", section=match["section"], index=match["index"], split="test",
                          domain=match["domain"].lower())
    return None


def _with_attributes(match: re.Match[str], name: str, **fields: object) -> ParsedName | None:
    tail = match["attrs"] or ""
    attributes = parse_attributes(tail)
    if attributes is None:
        return None
    return ParsedName(
        name=name,
        section=match["section"],
        index=match["index"],
        attributes=attributes,
        attribute_string=tail,
        **fields,  # type: ignore[arg-type]
    )


def _free_key(taken: dict[str, str], key: str) -> str:
    if key not in taken:
        return key
    n = 2
    while f"{key}_{n}" in taken:
        n += 1
    return f"{key}_{n}"
