"""infra/schedules.yaml: one valid recurring retraining per served machine type."""

from __future__ import annotations

from pathlib import Path

import pytest

from asdflow.config import PROFILES, load_config
from asdflow.errors import ConfigError
from asdflow.schedules import ScheduleSpec, load_schedules, validate_cron

ROOT = Path(__file__).resolve().parents[2]
SCHEDULES = ROOT / "infra" / "schedules.yaml"
DETECTOR_CONFIG = ROOT / "infra" / "k8s" / "base" / "detector-config" / "cluster.yaml"


def served_machine_types() -> dict[str, set[str]]:
    """Every place that says which machine types the detector serves."""
    served = {f"profile {p}": set(load_config(profile=p).serving.machine_types) for p in PROFILES}
    served["infra/k8s detector config"] = set(load_config(DETECTOR_CONFIG).serving.machine_types)
    return served


def test_schedules_file_loads_and_every_cron_is_valid():
    schedules = load_schedules(SCHEDULES)
    assert schedules.schedules, "infra/schedules.yaml has no schedule"
    for spec in schedules.schedules:
        validate_cron(spec.cron)
        assert spec.max_concurrency == 1, f"{spec.machine_type}: a retraining must not overlap the previous one"
        assert spec.no_catchup, f"{spec.machine_type}: a resumed schedule must not replay missed runs"


def test_every_served_machine_type_has_an_enabled_schedule():
    schedules = load_schedules(SCHEDULES)
    enabled = {spec.machine_type for spec in schedules.enabled()}
    for where, machine_types in served_machine_types().items():
        assert machine_types, f"{where}: serves no machine type"
        missing = machine_types - enabled
        assert not missing, f"{where} serves {sorted(missing)} but infra/schedules.yaml has no enabled schedule for them"


def test_schedule_names_and_revision_policies():
    specs = {spec.machine_type: spec for spec in load_schedules(SCHEDULES).schedules}
    assert specs["fan"].name == "asdflow-retrain-fan"
    assert len({spec.name for spec in specs.values()}) == len(specs)
    for spec in specs.values():
        if spec.data_revision == "latest":
            assert spec.pinned_revision is None
        else:
            assert spec.pinned_revision and spec.data_revision == f"pinned:{spec.pinned_revision}"


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 2 * * MON",
        "*/30 * * * * *",
        "0 0 0 ? 1 SUN",
        "0 0 0 1,15 * ?",
        "0 15 1-5/2 * JAN-MAR 1-5",
        "59 59 23 31 12 6",
        "0 0 12 * * sat",
    ],
)
def test_valid_crons_pass(expr):
    validate_cron(expr)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 2 * * *", "lacks the leading seconds field"),
        ("0 0 0 2 * * *", "has 7 fields"),
        ("", "empty"),
        ("@daily", "descriptors"),
        ("60 0 0 * * *", "second 60 is out of range 0-59"),
        ("0 60 0 * * *", "minute 60 is out of range 0-59"),
        ("0 0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 0 * * 7", "day-of-week 7 is out of range 0-6"),
        ("0 0 0 * FOO *", "month 'FOO' is not a number"),
        ("0 0 */0 * * *", "step '0' in hour must be a positive integer"),
        ("0 0 */25 * * *", "step 25 in hour is larger than its range"),
        ("0 0 5-1 * * *", "runs backwards"),
        ("0 0 1,,2 * * *", "empty list item"),
        ("? 0 0 * * *", "'?' is only allowed in day-of-month and day-of-week"),
        ("0 0 0 * * 1-2-3", "cannot read day-of-week"),
    ],
)
def test_bad_crons_are_rejected_with_a_clear_message(expr, message):
    with pytest.raises(ConfigError) as err:
        validate_cron(expr)
    assert message in str(err.value)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.yaml"
    path.write_text(text)
    return path


GOOD = """\
schedules:
  - machine_type: fan
    cron: "0 0 2 * * MON"
  - machine_type: pump
    cron: "0 30 2 * * MON"
    data_revision: "pinned:abc123"
"""


def test_defaults_of_a_minimal_file(tmp_path):
    schedules = load_schedules(write(tmp_path, GOOD))
    fan, pump = schedules.schedules
    assert (fan.data_revision, fan.profile, fan.enabled, fan.max_concurrency, fan.no_catchup) == (
        "latest",
        "full",
        True,
        1,
        True,
    )
    assert pump.pinned_revision == "abc123"
    assert schedules.for_machine_type("pump") is pump and schedules.for_machine_type("valve") is None


def test_bad_cron_names_line_and_field(tmp_path):
    path = write(tmp_path, GOOD.replace('"0 30 2 * * MON"', '"0 30 2 * *"'))
    with pytest.raises(ConfigError) as err:
        load_schedules(path)
    text = str(err.value)
    assert str(path) in text and "line 5" in text and "schedules.1.cron" in text
    assert "has 5 fields" in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("pinned:abc123", "pinned:"), ("line 6", "schedules.1.data_revision", "'latest' or 'pinned:")),
        (("pinned:abc123", "main"), ("line 6", "schedules.1.data_revision", "'latest' or 'pinned:")),
        (("machine_type: pump", "machine_type: fan"), ("more than one schedule", "'fan'")),
        (('cron: "0 0 2 * * MON"', 'cron: "0 0 2 * * MON"\n    profile: huge'), ("line 4", "schedules.0.profile")),
        (('cron: "0 0 2 * * MON"', 'cron: "0 0 2 * * MON"\n    max_concurrency: 0'), ("schedules.0.max_concurrency",)),
        (('cron: "0 0 2 * * MON"', 'cron: "0 0 2 * * MON"\n    catchup: true'), ("line 4", "schedules.0.catchup")),
        (("  - machine_type: pump\n", "  - machine_tipe: pump\n"), ("schedules.1.machine_type", "Field required")),
    ],
)
def test_bad_fields_are_rejected_with_line_and_field(tmp_path, change, expected):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as err:
        load_schedules(write(tmp_path, GOOD.replace(old, new, 1)))
    for fragment in expected:
        assert fragment in str(err.value)


def test_malformed_missing_and_wrong_shape(tmp_path):
    with pytest.raises(ConfigError, match="malformed YAML .* line 3"):
        load_schedules(write(tmp_path, 'schedules:\n  - machine_type: fan\n    cron: "0 0 2 * * MON" x\n'))
    with pytest.raises(ConfigError, match="not found"):
        load_schedules(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_schedules(write(tmp_path, "- machine_type: fan\n"))


def test_spec_normalises_cron_whitespace():
    assert ScheduleSpec(machine_type="fan", cron=" 0  0 2 * * MON ").cron == "0 0 2 * * MON"
