"""The recurring retraining runs (`infra/schedules.yaml`): one rule, expanded per machine type.

The file holds one `rule` (cron, data revision, profile, ...) and optional `overrides`
per machine type. `SchedulesFile.expand` turns it into one ScheduleSpec per machine
type found in the data (`asdflow.data.dataset_machine_types`, at the rule's revision),
each next one `stagger_minutes` later; `asdflow pipeline schedule --apply` reconciles
those into Kubeflow Pipelines recurring runs. KFP's cron has six fields, seconds first
(`sec min hour dom mon dow`, robfig/cron), and runs in UTC. Everything is checked
here, before anything reaches a cluster, and errors name the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


# A machine type becomes a folder name and part of a KFP display name (`asdflow-retrain-<name>`).
MACHINE_TYPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MINUTES_PER_DAY = 24 * 60


def _checked_cron(value: str) -> str:
    try:
        validate_cron(value)
    except ConfigError as err:
        raise ValueError(str(err)) from None
    return " ".join(value.split())


def _checked_revision(value: str) -> str:
    if value == "latest":
        return value
    if value.startswith("pinned:") and value[len("pinned:"):].strip():
        return value
    raise ValueError(f"data_revision {value!r} must be 'latest' or 'pinned:<DVC/git revision>'")


def _checked_machine_type(value: str) -> str:
    if not MACHINE_TYPE_NAME.match(value):
        raise ValueError(f"machine type {value!r}: use letters, digits, '_' and '-' (a DCASE folder name, e.g. ToyCar)")
    return value


def pinned_revision_of(data_revision: str) -> str | None:
    """`pinned:<rev>` -> `<rev>`; `latest` -> None (the newest committed data at run time)."""
    return data_revision[len("pinned:"):].strip() if data_revision != "latest" else None


MachineTypeName = Annotated[str, AfterValidator(_checked_machine_type)]
Cron = Annotated[str, AfterValidator(_checked_cron)]
Revision = Annotated[str, AfterValidator(_checked_revision)]


class ScheduleSpec(BaseModel):
    """One recurring retraining run of the training pipeline for one machine type (the rule, expanded)."""

    model_config = ConfigDict(extra="forbid")

    machine_type: MachineTypeName
    cron: Cron  # 6 fields, UTC
    data_revision: Revision = "latest"  # `latest` (DVC HEAD at run time) or `pinned:<rev>`
    profile: Literal["tiny", "demo", "full"] = "full"
    enabled: bool = True
    max_concurrency: int = Field(1, ge=1)  # a retraining never overlaps the previous one
    no_catchup: bool = True  # a paused schedule does not replay missed runs when resumed

    @property
    def pinned_revision(self) -> str | None:
        """The DVC revision to run on, or None for the latest at run time."""
        return pinned_revision_of(self.data_revision)

    @property
    def name(self) -> str:
        """The recurring run's display name in KFP (the key reconciliation matches on)."""
        return f"asdflow-retrain-{self.machine_type}"


class ScheduleOverride(BaseModel):
    """What one machine type does differently from the rule; unset fields follow the rule.

    A cron given here is used as written: the machine type leaves the rule's stagger.
    """

    model_config = ConfigDict(extra="forbid")

    cron: Cron | None = None
    data_revision: Revision | None = None
    profile: Literal["tiny", "demo", "full"] | None = None
    enabled: bool | None = None
    max_concurrency: int | None = Field(None, ge=1)
    no_catchup: bool | None = None



class ScheduleRule(BaseModel):
    """The one rule every machine type in the data follows (`rule:` in the schedules file)."""

    model_config = ConfigDict(extra="forbid")

    cron: Cron  # 6 fields, UTC: when the first machine type (in sorted order) starts
    data_revision: Revision = "latest"  # also the revision whose data says which machine types exist
    profile: Literal["tiny", "demo", "full"] = "full"
    enabled: bool = True
    max_concurrency: int = Field(1, ge=1)
    no_catchup: bool = True
    # Each next machine type (sorted by name) starts this much later, so the GPU pool serves them in turn.
    stagger_minutes: int = Field(0, ge=0, lt=MINUTES_PER_DAY)

    @model_validator(mode="after")
    def _stagger_needs_a_fixed_start(self) -> ScheduleRule:
        if self.stagger_minutes and not _fixed_start(self.cron):
            raise ValueError(f"stagger_minutes needs a cron with one fixed minute and hour (e.g. '0 0 2 * * MON'), "
                             f"not {self.cron!r}")
        return self

    @property
    def pinned_revision(self) -> str | None:
        """The revision whose data lists the machine types (None: the newest committed)."""
        return pinned_revision_of(self.data_revision)

    def staggered_cron(self, slot: int, machine_type: str) -> str:
        """The rule's cron moved `slot` staggers later; the stagger never crosses midnight
        (that would move the run to another day than the cron's day fields say)."""
        if not self.stagger_minutes or slot == 0:
            return self.cron
        second, minute, hour, *days = self.cron.split()
        start = int(hour) * 60 + int(minute) + slot * self.stagger_minutes
        if start >= MINUTES_PER_DAY:
            raise ConfigError(
                f"schedules rule: {machine_type} (stagger slot {slot + 1}) would start {slot * self.stagger_minutes} "
                f"min after {int(hour):02d}:{int(minute):02d}, past midnight: start earlier or lower stagger_minutes"
            )
        return " ".join([second, str(start % 60), str(start // 60), *days])


def _fixed_start(cron: str) -> bool:
    _second, minute, hour, *_ = cron.split()
    return minute.isdigit() and hour.isdigit()


class RecurringSchedules(BaseModel):
    """The rule expanded over the machine types found in the data: one ScheduleSpec each."""

    schedules: list[ScheduleSpec]
    # True when `--machine-type` chose some: reconciliation leaves the other machine types' runs alone.
    narrowed: bool = False
    unused_overrides: list[str] = Field(default_factory=list)  # overrides naming no machine type in the data

    def enabled(self) -> list[ScheduleSpec]:
        return [spec for spec in self.schedules if spec.enabled]

    def for_machine_type(self, machine_type: str) -> ScheduleSpec | None:
        return next((spec for spec in self.schedules if spec.machine_type == machine_type), None)


class SchedulesFile(BaseModel):
    """`infra/schedules.yaml`: one rule, plus what single machine types do differently."""

    model_config = ConfigDict(extra="forbid")

    rule: ScheduleRule
    overrides: dict[MachineTypeName, ScheduleOverride] = Field(default_factory=dict)

    @field_validator("overrides", mode="before")
    @classmethod
    def _no_overrides(cls, value: Any) -> Any:
        return {} if value is None else value  # `overrides:` with only commented-out entries

    def expand(self, machine_types: Sequence[str], only: Sequence[str] | None = None) -> RecurringSchedules:
        """One schedule per machine type (as found in the data, at the rule's revision).

        The machine types following the rule's cron take stagger slots in sorted order;
        the slots are counted over all of them, so narrowing to `only` (or disabling one)
        moves no other machine type's time. `only` must name machine types in the data.
        """
        found = sorted(set(machine_types))
        if only:
            missing = sorted(set(only) - set(found))
            if missing:
                raise ConfigError(f"--machine-type {', '.join(missing)}: not in the data "
                                  f"(found: {', '.join(found) or 'none'})")
        on_rule_cron = [m for m in found if self._override(m).cron is None]
        schedules = [self._schedule(m, on_rule_cron) for m in found if not only or m in only]
        return RecurringSchedules(
            schedules=schedules,
            narrowed=bool(only),
            unused_overrides=sorted(set(self.overrides) - set(found)),
        )

    def _override(self, machine_type: str) -> ScheduleOverride:
        return self.overrides.get(machine_type) or ScheduleOverride()

    def _schedule(self, machine_type: str, on_rule_cron: list[str]) -> ScheduleSpec:
        override = self._override(machine_type)
        cron = override.cron or self.rule.staggered_cron(on_rule_cron.index(machine_type), machine_type)
        settings = {**self.rule.model_dump(exclude={"stagger_minutes", "cron"}),
                    **override.model_dump(exclude={"cron"}, exclude_none=True)}
        try:
            return ScheduleSpec(machine_type=machine_type, cron=cron, **settings)
        except ValidationError as err:  # a data folder whose name cannot name a recurring run
            raise ConfigError(f"machine type folder {machine_type!r} in the data: "
                              f"{err.errors()[0]['msg'].removeprefix('Value error, ')}") from None


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
        raise ConfigError(f"{path}: the top level must be a mapping with a 'rule' (and optional 'overrides')")
    if "schedules" in data:
        raise ConfigError(f"{path}: a 'schedules' list is the old format: write one 'rule' (machine types come "
                          "from the data) and 'overrides' per machine type; see infra/schedules.yaml")
    try:
        return SchedulesFile.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        # a misspelt key explains the "Field required" that comes with it: name it first
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = tuple(part for part in first["loc"] if part != "[key]")  # a bad override name: the key itself
        field = ".".join(str(p) for p in loc) or "rule"
        line = _line_of(root, loc)
        where = f" line {line}" if line else ""
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}{where}: {field}: {message}") from None
