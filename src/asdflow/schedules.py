"""The recurring retraining runs per machine type (`infra/schedules.yaml`).

`asdflow pipeline schedule --apply` reconciles this file into Kubeflow Pipelines
recurring runs. KFP's cron has six fields, seconds first (`sec min hour dom mon dow`,
robfig/cron), and runs in UTC. Everything is checked here, before anything reaches
a cluster, and errors name the file, the line and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from asdflow.errors import ConfigError

DEFAULT_SCHEDULES_PATH = Path("infra") / "schedules.yaml"

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


class _CronField(BaseModel):
    name: str
    low: int
    high: int
    names: dict[str, int] = Field(default_factory=dict)
    question_mark: bool = False  # '?' (no specific value) is allowed in day-of-month and day-of-week


CRON_FIELDS = (
    _CronField(name="second", low=0, high=59),
    _CronField(name="minute", low=0, high=59),
    _CronField(name="hour", low=0, high=23),
    _CronField(name="day-of-month", low=1, high=31, question_mark=True),
    _CronField(name="month", low=1, high=12, names={m: i + 1 for i, m in enumerate(_MONTHS)}),
    _CronField(name="day-of-week", low=0, high=6, names={d: i for i, d in enumerate(_DAYS)}, question_mark=True),
)

_RANGE = re.compile(r"^(?P<start>[^-/]+)(?:-(?P<end>[^-/]+))?(?:/(?P<step>[^/]+))?$")


def _value(token: str, field: _CronField, expr: str) -> int:
    upper = token.upper()
    if upper in field.names:
        return field.names[upper]
    if not token.isdigit():
        known = f" or one of {', '.join(field.names)}" if field.names else ""
        raise ConfigError(
            f"cron {expr!r}: {field.name} {token!r} is not a number{known} "
            f"(allowed {field.low}-{field.high})"
        )
    number = int(token)
    if not field.low <= number <= field.high:
        raise ConfigError(f"cron {expr!r}: {field.name} {number} is out of range {field.low}-{field.high}")
    return number


def _check_field(part: str, field: _CronField, expr: str) -> None:
    if part == "?":
        if not field.question_mark:
            raise ConfigError(f"cron {expr!r}: '?' is only allowed in day-of-month and day-of-week, not {field.name}")
        return
    for item in part.split(","):
        if not item:
            raise ConfigError(f"cron {expr!r}: empty list item in {field.name} {part!r}")
        match = _RANGE.match(item)
        if match is None:
            raise ConfigError(f"cron {expr!r}: cannot read {field.name} {item!r} (use N, A-B, */S, A-B/S or lists)")
        start, end, step = match["start"], match["end"], match["step"]
        if step is not None:
            if not step.isdigit() or int(step) < 1:
                raise ConfigError(f"cron {expr!r}: step {step!r} in {field.name} must be a positive integer")
            if int(step) > field.high - field.low + 1:
                raise ConfigError(
                    f"cron {expr!r}: step {step} in {field.name} is larger than its range {field.low}-{field.high}"
                )
        if start == "*":
            if end is not None:
                raise ConfigError(f"cron {expr!r}: '*-{end}' in {field.name} is not a range")
            continue
        first = _value(start, field, expr)
        if end is not None:
            last = _value(end, field, expr)
            if last < first:
                raise ConfigError(f"cron {expr!r}: range {item!r} in {field.name} runs backwards")


def validate_cron(expr: str) -> None:
    """Raise ConfigError unless `expr` is a valid 6-field KFP cron (`sec min hour dom mon dow`)."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError("cron expression is empty: KFP needs 6 fields 'sec min hour dom mon dow'")
    if expr.strip().startswith("@"):
        raise ConfigError(f"cron {expr!r}: descriptors like @daily are not accepted; write the 6 fields")
    parts = expr.split()
    if len(parts) != len(CRON_FIELDS):
        hint = " (a 5-field Unix cron lacks the leading seconds field)" if len(parts) == 5 else ""
        raise ConfigError(
            f"cron {expr!r}: has {len(parts)} fields, KFP needs 6 'sec min hour dom mon dow'{hint}"
        )
    for part, field in zip(parts, CRON_FIELDS):
        _check_field(part, field, expr)


class ScheduleSpec(BaseModel):
    """One recurring retraining run of the training pipeline for one machine type."""

    model_config = ConfigDict(extra="forbid")

    machine_type: str = Field(min_length=1)
    cron: str  # 6 fields, UTC
    data_revision: str = "latest"  # `latest` (DVC HEAD at run time) or `pinned:<rev>`
    profile: Literal["tiny", "demo", "full"] = "full"
    enabled: bool = True
    max_concurrency: int = Field(1, ge=1)  # a retraining never overlaps the previous one
    no_catchup: bool = True  # a paused schedule does not replay missed runs when resumed

    @field_validator("cron")
    @classmethod
    def _cron_is_valid(cls, value: str) -> str:
        try:
            validate_cron(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return " ".join(value.split())

    @field_validator("data_revision")
    @classmethod
    def _revision_policy(cls, value: str) -> str:
        if value == "latest":
            return value
        if value.startswith("pinned:") and value[len("pinned:"):].strip():
            return value
        raise ValueError(f"data_revision {value!r} must be 'latest' or 'pinned:<DVC/git revision>'")

    @property
    def pinned_revision(self) -> str | None:
        """The DVC revision to run on, or None for the latest at run time."""
        return self.data_revision[len("pinned:"):].strip() if self.data_revision != "latest" else None

    @property
    def name(self) -> str:
        """The recurring run's display name in KFP (the key reconciliation matches on)."""
        return f"asdflow-retrain-{self.machine_type}"


class SchedulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedules: list[ScheduleSpec]

    @model_validator(mode="after")
    def _one_per_machine_type(self) -> SchedulesFile:
        seen: set[str] = set()
        for spec in self.schedules:
            if spec.machine_type in seen:
                raise ValueError(f"machine type {spec.machine_type!r} has more than one schedule")
            seen.add(spec.machine_type)
        return self

    def enabled(self) -> list[ScheduleSpec]:
        return [spec for spec in self.schedules if spec.enabled]

    def for_machine_type(self, machine_type: str) -> ScheduleSpec | None:
        return next((spec for spec in self.schedules if spec.machine_type == machine_type), None)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at pydantic's error location (the deepest one found)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == key), None)
            if match is None:
                break
            node = match[1]
            line = match[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def load_schedules(path: str | Path = DEFAULT_SCHEDULES_PATH) -> SchedulesFile:
    """Read and validate a schedules file; ConfigError names the line and field at fault."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"schedules file not found: {path}") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with a 'schedules' list")
    try:
        return SchedulesFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc) or "schedules"
        line = _line_of(root, loc)
        where = f" line {line}" if line else ""
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}{where}: {field}: {message}") from None
