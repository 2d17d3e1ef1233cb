"""The DCASE Task 2 official score, computed exactly as the official evaluator does.

Per machine type and section (dcase2023_task2_evaluator):
- AUC(source): source-domain normals against ALL anomalies of the section;
- AUC(target): target-domain normals against ALL anomalies of the section;
- pAUC: sklearn `roc_auc_score(y, s, max_fpr=0.1)` (McClish-standardised) over
  every test clip of the section;
- the official score: the harmonic mean of the concatenated list of AUC(source),
  AUC(target) and pAUC values (one section: of its three values; a machine type:
  of all its sections' values; overall: of every machine type's and section's),
  each clipped at machine epsilon first, as the evaluator does.

Anomaly = 1; higher scores mean more anomalous. Before anything is scored the
scored names must be exactly the ground-truth names: a silently missing or extra
clip would change the score without anyone noticing.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

from asdflow.data.manifest import Manifest
from asdflow.errors import EvaluationError

MAX_FPR = 0.1
# The evaluator clips every value at machine epsilon before the harmonic mean, so an
# AUC of 0 gives a near-zero score instead of a division by zero.
EPSILON = sys.float_info.epsilon
GROUND_TRUTH_COLUMNS = ["name", "machine_type", "section", "domain", "label"]
RECORD_COLUMNS = ["name", "machine_type", "section"]
DOMAINS = ("source", "target")
# Name separator of qualified keys "machine_type/name": needed where the same file name
# occurs under several machine types (2020 names, eval names section_00_0000.wav).
KEY_SEPARATOR = "/"
_LISTED = 10  # how many names an error message lists


# -- ground truth -------------------------------------------------------------


def ground_truth_from_manifest(manifest: Manifest) -> pd.DataFrame:
    """The labelled test clips of a manifest: name, machine_type, section, domain, label.

    Training, supplemental and unlabelled (eval) clips are left out. Rows are sorted
    by machine type, section and name; `label` is "normal" or "anomaly".
    """
    rows = [
        {
            "name": r.name,
            "machine_type": r.machine_type,
            "section": section_id(r.section),
            "domain": r.domain,
            "label": r.label,
        }
        for r in manifest.records
        if r.split == "test" and r.label is not None and r.domain is not None
    ]
    frame = pd.DataFrame(rows, columns=GROUND_TRUTH_COLUMNS)
    return frame.sort_values(["machine_type", "section", "name"], kind="stable").reset_index(drop=True)


def section_id(value: object) -> str:
    """Two-digit section id ("00") from "00", "0", 0 or 0.0 (a CSV round trip makes ints)."""
    text = str(value).strip()
    try:
        return f"{int(float(text)):02d}"
    except ValueError:
        return text


def clip_key(machine_type: str, name: str) -> str:
    """The qualified key of a clip, for score mappings that span machine types."""
    return f"{machine_type}{KEY_SEPARATOR}{name}"


def _require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvaluationError(f"{what} lacks column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})")


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    more = f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return f"{shown}{more}"


def align_to_records(
    records: pd.DataFrame, values: Mapping[str, Any], what: str = "scores"
) -> tuple[list[str], list[Any]]:
    """Keys and values of `values` in the row order of `records`, after checking the names.

    Keys are the file names, or "machine_type/name" for every key when names repeat
    across machine types. The key set must equal the records' names exactly: missing
    and extra names raise an EvaluationError listing up to ten of each with counts.
    """
    _require_columns(records, RECORD_COLUMNS, "the clip list")
    values = dict(values)
    names = [str(n) for n in records["name"]]
    machine_types = [str(m) for m in records["machine_type"]]
    qualified = bool(values) and all(KEY_SEPARATOR in str(k) for k in values)
    expected = [clip_key(m, n) for m, n in zip(machine_types, names)] if qualified else names

    counts = pd.Series(expected).value_counts()
    repeated = sorted(counts[counts > 1].index)
    if repeated:
        if qualified:
            raise EvaluationError(f"the ground truth lists {len(repeated)} clip(s) twice: {_listing(repeated)}")
        raise EvaluationError(
            f"{len(repeated)} file name(s) occur under several machine types ({_listing(repeated)}): "
            f"key the {what} as 'machine_type{KEY_SEPARATOR}name' or evaluate one machine type at a time"
        )

    keys = [str(k) for k in values]
    missing = sorted(set(expected) - set(keys))
    extra = sorted(set(keys) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} ground-truth clip(s) have no {what} ({_listing(missing)})")
        if extra:
            parts.append(f"{len(extra)} scored name(s) are not in the ground truth ({_listing(extra)})")
        raise EvaluationError(
            f"the {what} do not cover exactly the ground-truth clips "
            f"({len(expected)} expected, {len(keys)} given): " + "; ".join(parts)
        )
    by_key = {str(k): v for k, v in values.items()}
    return expected, [by_key[k] for k in expected]


def finite_scores(keys: list[str], raw: list[Any], what: str = "scores") -> np.ndarray:
    """Scores as float64; NaN, infinite or non-numeric scores raise, naming the clips."""
    scores = np.empty(len(raw), dtype=np.float64)
    bad: list[str] = []
    for i, (key, value) in enumerate(zip(keys, raw)):
        try:
            scores[i] = float(value)
        except (TypeError, ValueError):
            scores[i] = np.nan
        if not math.isfinite(scores[i]):
            bad.append(f"{key}={value!r}")
    if bad:
        raise EvaluationError(f"{len(bad)} clip(s) have non-finite {what}: {_listing(bad)}")
    return scores


def _label_codes(frame: pd.DataFrame) -> np.ndarray:
    """1 for anomaly, 0 for normal; "normal"/"anomaly" strings or 0/1 are accepted."""
    codes = np.empty(len(frame), dtype=np.int64)
    bad = []
    for i, (name, label) in enumerate(zip(frame["name"], frame["label"])):
        text = str(label).strip().lower()
        if text in ("anomaly", "1", "1.0", "true"):
            codes[i] = 1
        elif text in ("normal", "0", "0.0", "false"):
            codes[i] = 0
        else:
            bad.append(f"{name}={label!r}")
    if bad:
        raise EvaluationError(f"ground-truth labels must be normal or anomaly: {_listing(bad)}")
    return codes


def _domains(frame: pd.DataFrame) -> np.ndarray:
    domains = np.asarray([str(d).strip().lower() for d in frame["domain"]], dtype=object)
    bad = [f"{n}={d!r}" for n, d, clean in zip(frame["name"], frame["domain"], domains) if clean not in DOMAINS]
    if bad:
        raise EvaluationError(f"ground-truth domains must be source or target: {_listing(bad)}")
    return domains


# -- report -------------------------------------------------------------------


class SectionScore(BaseModel):
    # NaN (a domain without normals, no labelled anomalies) stays NaN through the JSON report
    model_config = ConfigDict(ser_json_inf_nan="constants")

    machine_type: str
    section: str
    auc_source: float
    auc_target: float
    pauc: float
    official: float  # harmonic mean of auc_source, auc_target, pauc
    n_source_normal: int
    n_target_normal: int
    n_anomaly: int

    def values(self) -> list[float]:
        return [self.auc_source, self.auc_target, self.pauc]


class AggregateScore(BaseModel):
    """Several sections together: arithmetic means per metric, the official harmonic mean."""

    # NaN (a domain without normals, no labelled anomalies) stays NaN through the JSON report
    model_config = ConfigDict(ser_json_inf_nan="constants")

    auc_source: float  # arithmetic mean over sections
    auc_target: float
    pauc: float
    official: float  # harmonic mean of every section's AUC(source), AUC(target) and pAUC
    arithmetic_mean: float  # arithmetic mean of that same list, for reference
    n_sections: int

    @classmethod
    def of(cls, sections: list[SectionScore]) -> "AggregateScore":
        values = [s.auc_source for s in sections] + [s.auc_target for s in sections] + [s.pauc for s in sections]
        present = [v for v in values if math.isfinite(v)]  # a partial evaluation may lack a domain's AUC

        def mean(xs: list[float]) -> float:
            xs = [x for x in xs if math.isfinite(x)]
            return float(np.mean(xs)) if xs else math.nan

        return cls(
            auc_source=mean([s.auc_source for s in sections]),
            auc_target=mean([s.auc_target for s in sections]),
            pauc=mean([s.pauc for s in sections]),
            official=official_hmean(present) if present else math.nan,
            arithmetic_mean=mean(values),
            n_sections=len(sections),
        )


class EvaluationReport(BaseModel):
    # NaN (a domain without normals, no labelled anomalies) stays NaN through the JSON report
    model_config = ConfigDict(ser_json_inf_nan="constants")

    max_fpr: float = MAX_FPR
    n_unlabelled: int = 0  # scored test clips without a label (eval sets): in the submission, not in the score
    not_evaluated: str | None = None  # why the scores are NaN (no labelled anomalies: the gate simulates them)
    partial: str | None = None  # what the clips lacked for the official score (then computed on what there is)
    sections: list[SectionScore] = Field(default_factory=list)
    machine_types: dict[str, AggregateScore] = Field(default_factory=dict)
    overall: AggregateScore

    @property
    def official(self) -> float:
        return self.overall.official

    @classmethod
    def unevaluated(cls, machine_types: list[str], reason: str, n_unlabelled: int = 0) -> "EvaluationReport":
        """A report with NaN scores and the reason: the clips cannot be scored officially (no labelled
        anomalies), which is a fact about the data, not a failure of the run."""
        nan = float("nan")
        blank = AggregateScore(auc_source=nan, auc_target=nan, pauc=nan, official=nan, arithmetic_mean=nan,
                               n_sections=0)
        return cls(n_unlabelled=n_unlabelled, not_evaluated=reason, overall=blank,
                   machine_types={m: blank for m in machine_types})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvaluationReport":
        return cls.model_validate(dict(data))

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "EvaluationReport":
        return cls.model_validate_json(text)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EvaluationReport":
        try:
            return cls.from_json(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise EvaluationError(f"cannot read an evaluation report from {path}: {err}") from None

    def to_metrics(self) -> dict[str, float]:
        """Flat name -> value pairs (MLflow metric names): overall, per machine type, per section."""
        out: dict[str, float] = {}

        def put(prefix: str, score: SectionScore | AggregateScore) -> None:
            for field in ("official", "auc_source", "auc_target", "pauc"):
                out[f"{prefix}{field}"] = float(getattr(score, field))

        put("", self.overall)
        out["arithmetic_mean"] = self.overall.arithmetic_mean
        for machine_type, score in self.machine_types.items():
            put(f"{machine_type}.", score)
        for s in self.sections:
            put(f"{s.machine_type}.section_{s.section}.", s)
        return out

    def to_table(self) -> str:
        """An aligned text table: one row per section, per machine type, and overall."""
        header = ["machine type", "section", "AUC source", "AUC target", f"pAUC({self.max_fpr:g})", "official",
                  "n source", "n target", "n anomaly"]
        rows: list[list[str]] = []
        for machine_type in sorted(self.machine_types):
            mine = [s for s in self.sections if s.machine_type == machine_type]
            for s in mine:
                rows.append([s.machine_type, s.section, *_fmt(s.auc_source, s.auc_target, s.pauc, s.official),
                             str(s.n_source_normal), str(s.n_target_normal), str(s.n_anomaly)])
            if len(mine) > 1:
                a = self.machine_types[machine_type]
                rows.append([machine_type, "all", *_fmt(a.auc_source, a.auc_target, a.pauc, a.official), "", "", ""])
        o = self.overall
        rows.append(["overall", "all", *_fmt(o.auc_source, o.auc_target, o.pauc, o.official), "", "", ""])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(line(header))
        note = ("rows 'all': AUC and pAUC are arithmetic means over sections; official is the harmonic mean "
                "of every section's AUC source, AUC target and pAUC")
        return "\n".join([line(header), rule, *(line(r) for r in rows), rule, note])


def _fmt(*values: float) -> list[str]:
    return [f"{v:.4f}" for v in values]


def official_hmean(values: list[float]) -> float:
    """Harmonic mean after clipping at machine epsilon, as the DCASE evaluator computes it."""
    return float(hmean(np.maximum(np.asarray(values, dtype=np.float64), EPSILON)))


# -- scoring ------------------------------------------------------------------


def _partial_report(frame: pd.DataFrame, gaps: list[str], max_fpr: float) -> EvaluationReport:
    sections = []
    for (machine_type, section), group in frame.groupby(["machine_type", "section"], sort=True):
        y, s, domain = group["y"].to_numpy(), group["score"].to_numpy(), group["domain"].to_numpy()
        if not (y == 1).any() or not (y == 0).any():
            continue
        auc = {}
        for name in DOMAINS:
            keep = (domain == name) | (y == 1)
            auc[name] = float(roc_auc_score(y[keep], s[keep])) if ((domain == name) & (y == 0)).any() else math.nan
        pauc = float(roc_auc_score(y, s, max_fpr=max_fpr))
        present = [v for v in (auc["source"], auc["target"], pauc) if math.isfinite(v)]
        sections.append(SectionScore(
            machine_type=machine_type, section=section, auc_source=auc["source"], auc_target=auc["target"],
            pauc=pauc, official=official_hmean(present),
            n_source_normal=int(((domain == "source") & (y == 0)).sum()),
            n_target_normal=int(((domain == "target") & (y == 0)).sum()), n_anomaly=int((y == 1).sum()),
        ))
    if not sections:
        raise EvaluationError("cannot compute AUC and pAUC: " + "; ".join(gaps))
    machine_types = {m: AggregateScore.of([x for x in sections if x.machine_type == m])
                     for m in sorted({x.machine_type for x in sections})}
    return EvaluationReport(max_fpr=max_fpr, sections=sections, machine_types=machine_types,
                            overall=AggregateScore.of(sections),
                            partial="not the official score: " + "; ".join(gaps))


def evaluate_scores(
    ground_truth: pd.DataFrame, scores: Mapping[str, float], max_fpr: float = MAX_FPR, partial: bool = False
) -> EvaluationReport:
    """The official DCASE score of `scores` (name -> anomaly score) against `ground_truth`.

    `ground_truth` is `ground_truth_from_manifest(...)` or any frame with its columns.
    Raises EvaluationError, before computing anything, when the scored names differ
    from the ground-truth names, a score is not finite, or a section lacks source
    normals, target normals or anomalies. `partial`: a section that lacks normals of a
    domain gets NaN for that AUC and its official score is the harmonic mean of what it
    has; a section without anomalies is left out; `report.partial` says what was missing
    (a plant's few labelled clips: a score, marked as not the official one).
    """
    if not 0 < max_fpr <= 1:
        raise EvaluationError(f"max_fpr must be in (0, 1], got {max_fpr}")
    frame = scored_frame(ground_truth, scores)
    gaps = section_gaps(frame) if partial else []
    if partial and gaps:
        return _partial_report(frame, gaps, max_fpr)
    _check_sections(frame)

    sections = [
        _section_score(machine_type, section, group, max_fpr)
        for (machine_type, section), group in frame.groupby(["machine_type", "section"], sort=True)
    ]
    machine_types = {
        machine_type: AggregateScore.of([s for s in sections if s.machine_type == machine_type])
        for machine_type in sorted({s.machine_type for s in sections})
    }
    return EvaluationReport(max_fpr=max_fpr, sections=sections, machine_types=machine_types,
                            overall=AggregateScore.of(sections))


def scored_frame(ground_truth: pd.DataFrame, scores: Mapping[str, float]) -> pd.DataFrame:
    """Ground truth joined with checked scores: name, machine_type, section, domain, y (1 = anomaly), score."""
    _require_columns(ground_truth, GROUND_TRUTH_COLUMNS, "the ground truth")
    if len(ground_truth) == 0:
        raise EvaluationError("the ground truth has no labelled test clips to evaluate")
    keys, raw = align_to_records(ground_truth, scores)
    values = finite_scores(keys, raw)
    return pd.DataFrame({
        "name": [str(n) for n in ground_truth["name"]],
        "machine_type": [str(m) for m in ground_truth["machine_type"]],
        "section": [section_id(s) for s in ground_truth["section"]],
        "domain": _domains(ground_truth),
        "y": _label_codes(ground_truth),
        "score": values,
    })


def section_gaps(frame: pd.DataFrame) -> list[str]:
    """What each section lacks for the official score (normals of a domain, anomalies)."""
    problems = []
    for (machine_type, section), group in frame.groupby(["machine_type", "section"], sort=True):
        normal = group[group["y"] == 0]
        for domain in DOMAINS:
            if not (normal["domain"] == domain).any():
                problems.append(f"{machine_type} section {section}: no {domain}-domain normal clips")
        if not (group["y"] == 1).any():
            problems.append(f"{machine_type} section {section}: no anomalous clips (source or target domain)")
    return problems


def _check_sections(frame: pd.DataFrame) -> None:
    """Every section needs normals in both domains and anomalies: list every gap at once."""
    problems = section_gaps(frame)
    if problems:
        raise EvaluationError("cannot compute AUC and pAUC: " + "; ".join(problems))


def _section_score(machine_type: str, section: str, group: pd.DataFrame, max_fpr: float) -> SectionScore:
    y = group["y"].to_numpy()
    s = group["score"].to_numpy()
    domain = group["domain"].to_numpy()
    auc = {}
    for name in DOMAINS:
        keep = (domain == name) | (y == 1)  # this domain's normals and ALL anomalies
        auc[name] = float(roc_auc_score(y[keep], s[keep]))
    pauc = float(roc_auc_score(y, s, max_fpr=max_fpr))
    return SectionScore(
        machine_type=machine_type,
        section=section,
        auc_source=auc["source"],
        auc_target=auc["target"],
        pauc=pauc,
        official=official_hmean([auc["source"], auc["target"], pauc]),
        n_source_normal=int(((domain == "source") & (y == 0)).sum()),
        n_target_normal=int(((domain == "target") & (y == 0)).sum()),
        n_anomaly=int((y == 1).sum()),
    )


__all__ = [
    "MAX_FPR",
    "AggregateScore",
    "EvaluationReport",
    "SectionScore",
    "align_to_records",
    "clip_key",
    "evaluate_scores",
    "finite_scores",
    "ground_truth_from_manifest",
    "official_hmean",
    "scored_frame",
    "section_id",
]
