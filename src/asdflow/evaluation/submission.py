"""DCASE Task 2 submission files, in the exact form the official evaluator reads.

Per machine type and section, two CSV files without a header:
  anomaly_score_<machine_type>_section_<XX>_test.csv    rows `name.wav,score`
  decision_result_<machine_type>_section_<XX>_test.csv  rows `name.wav,0|1`
sorted by file name (dcase2023_task2_evaluator sorts the rows and pairs them with
its ground truth by position, so a missing or extra row shifts every label).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from asdflow.errors import EvaluationError
from asdflow.evaluation.metrics import (
    align_to_records,
    clip_key,
    finite_scores,
    section_id,
)

SCORE_FILE = "anomaly_score_{machine_type}_section_{section}_test.csv"
DECISION_FILE = "decision_result_{machine_type}_section_{section}_test.csv"
_SCORE_FILE_RE = re.compile(r"^anomaly_score_(?P<machine_type>.+)_section_(?P<section>\d+)_test\.csv$")


def submission_paths(directory: str | Path, machine_type: str, section: object) -> tuple[Path, Path]:
    """(anomaly score file, decision file) of one machine type and section."""
    directory = Path(directory)
    fields = {"machine_type": machine_type, "section": section_id(section)}
    return directory / SCORE_FILE.format(**fields), directory / DECISION_FILE.format(**fields)


def _decision_bits(keys: list[str], raw: list[object]) -> list[int]:
    bits, bad = [], []
    for key, value in zip(keys, raw):
        if isinstance(value, (bool, np.bool_)):
            bits.append(int(value))
            continue
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = np.nan
        if number in (0.0, 1.0):
            bits.append(int(number))
        else:
            bad.append(f"{key}={value!r}")
    if bad:
        shown = ", ".join(bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
        raise EvaluationError(f"{len(bad)} decision(s) are not 0/1 or True/False: {shown}")
    return bits


def write_submission(
    directory: str | Path,
    scores: Mapping[str, float],
    decisions: Mapping[str, bool | int],
    records: pd.DataFrame,
) -> list[Path]:
    """Write the anomaly-score and decision files of every machine type and section.

    `records` lists the scored clips (columns name, machine_type, section; e.g. the
    ground truth, or a manifest frame of unlabelled eval clips). `scores` and
    `decisions` are keyed like `evaluate_scores` expects (file name, or
    "machine_type/name") and must cover exactly the listed clips. Returns the paths
    written, score file then decision file per section, in machine type and section order.
    """
    if len(records) == 0:
        raise EvaluationError("no clips to write a submission for: the clip list is empty")
    keys, raw_scores = align_to_records(records, scores, what="scores")
    values = finite_scores(keys, raw_scores)
    decision_keys, raw_decisions = align_to_records(records, decisions, what="decisions")
    bits = _decision_bits(decision_keys, raw_decisions)

    table = pd.DataFrame({
        "name": [str(n) for n in records["name"]],
        "machine_type": [str(m) for m in records["machine_type"]],
        "section": [section_id(s) for s in records["section"]],
        "score": values,
        "decision": bits,
    })
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (machine_type, section), group in table.groupby(["machine_type", "section"], sort=True):
        group = group.sort_values("name", kind="stable")
        score_path, decision_path = submission_paths(directory, machine_type, section)
        # repr keeps every digit of the float: the file reads back to the same score
        _write_rows(score_path, [[n, repr(float(s))] for n, s in zip(group["name"], group["score"])])
        _write_rows(decision_path, [[n, str(int(d))] for n, d in zip(group["name"], group["decision"])])
        written += [score_path, decision_path]
    return written


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def read_submission(directory: str | Path, qualified: bool = False) -> tuple[dict[str, float], dict[str, int]]:
    """(scores, decisions) from the submission files in `directory`.

    Keys are file names, or "machine_type/name" with `qualified=True` (needed when
    names repeat across machine types, as eval names `section_00_0000.wav` do).
    """
    directory = Path(directory)
    score_files = sorted(p for p in directory.glob("anomaly_score_*_test.csv") if _SCORE_FILE_RE.match(p.name))
    if not score_files:
        raise EvaluationError(f"no anomaly_score_<machine_type>_section_XX_test.csv files in {directory}")
    scores: dict[str, float] = {}
    decisions: dict[str, int] = {}
    for score_path in score_files:
        match = _SCORE_FILE_RE.match(score_path.name)
        assert match is not None
        machine_type, section = match["machine_type"], match["section"]
        _, decision_path = submission_paths(directory, machine_type, section)
        if not decision_path.exists():
            raise EvaluationError(f"{score_path.name} has no matching {decision_path.name} in {directory}")
        file_scores = {n: _parse_float(v, score_path, i) for i, (n, v) in enumerate(_read_rows(score_path), 1)}
        file_decisions = {n: _parse_bit(v, decision_path, i) for i, (n, v) in enumerate(_read_rows(decision_path), 1)}
        if set(file_scores) != set(file_decisions):
            only = sorted(set(file_scores) ^ set(file_decisions))
            raise EvaluationError(
                f"{score_path.name} and {decision_path.name} list different clips: {', '.join(only[:10])}"
            )
        for name in sorted(file_scores):
            key = clip_key(machine_type, name) if qualified else name
            if key in scores:
                hint = "" if qualified else "; read with qualified=True"
                raise EvaluationError(f"{key} appears in more than one submission file in {directory}{hint}")
            scores[key] = file_scores[name]
            decisions[key] = file_decisions[name]
    return scores, decisions


def _read_rows(path: Path) -> list[tuple[str, str]]:
    rows = []
    with open(path, newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle), 1):
            if not row:
                continue
            if len(row) != 2:
                raise EvaluationError(f"{path.name} line {line_number}: expected 'name.wav,value', got {row!r}")
            rows.append((row[0], row[1]))
    names = [name for name, _ in rows]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise EvaluationError(f"{path.name} lists clips more than once: {', '.join(repeated[:10])}")
    return rows


def _parse_float(text: str, path: Path, row: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise EvaluationError(f"{path.name} row {row}: score {text!r} is not a number") from None


def _parse_bit(text: str, path: Path, row: int) -> int:
    if text.strip() not in ("0", "1"):
        raise EvaluationError(f"{path.name} row {row}: decision {text!r} is not 0 or 1")
    return int(text)


__all__ = ["read_submission", "submission_paths", "write_submission"]
