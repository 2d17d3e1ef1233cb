"""infra/schedules.yaml: one valid rule, expanded to one recurring retraining per machine type in the data."""

from __future__ import annotations

from pathlib import Path

import pytest

from asdflow.errors import ConfigError
from asdflow.schedules import ScheduleSpec, load_schedules, validate_cron

ROOT = Path(__file__).resolve().parents[2]
SCHEDULES = ROOT / "infra" / "schedules.yaml"
# DCASE 2023 Task 2: the development and the additional (evaluation) machine types
DCASE_2023 = ["ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve",
              "Vacuum", "ToyTank", "ToyNscale", "ToyDrone", "bandsaw", "grinder", "shaker"]


def test_project_rule_gives_every_dcase_machine_type_an_enabled_staggered_run():
    expanded = load_schedules(SCHEDULES).expand(DCASE_2023)
    specs = expanded.schedules
    assert [s.machine_type for s in specs] == sorted(DCASE_2023)
    assert expanded.enabled() == specs, "the project rule retrains every machine type in the data"
    assert len({s.name for s in specs}) == len(specs) and specs[0].name == f"asdflow-retrain-{specs[0].machine_type}"
    for spec in specs:
        validate_cron(spec.cron)
        assert spec.max_concurrency == 1, f"{spec.machine_type}: a retraining must not overlap the previous one"
        assert spec.no_catchup, f"{spec.machine_type}: a resumed schedule must not replay missed runs"
    starts = [tuple(int(x) for x in s.cron.split()[1:3]) for s in specs]  # (minute, hour)
    assert len(set(starts)) == len(starts), "the GPU pool serves one retraining at a time"
    assert not expanded.unused_overrides


def test_project_file_comment_explains_the_rule():
    header = SCHEDULES.read_text().split("\nrule:")[0]
    for word in ("stagger_minutes", "data_revision", "overrides", "asdflow pipeline schedule", "6 fields"):
        assert word in header


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
rule:
  cron: "0 0 2 * * MON"
  stagger_minutes: 30
overrides:
  valve:
    cron: "0 0 3 1 * *"
    data_revision: "pinned:abc123"
  pump:
    enabled: false
"""


def test_one_rule_and_overrides_expand_per_machine_type(tmp_path):
    schedules = load_schedules(write(tmp_path, GOOD))
    expanded = schedules.expand(["slider", "valve", "fan", "bearing", "pump"])
    by_type = {spec.machine_type: spec for spec in expanded.schedules}
    assert list(by_type) == ["bearing", "fan", "pump", "slider", "valve"]
    # the rule's cron, staggered in sorted order; valve has its own cron and leaves the stagger;
    # pump is disabled but keeps its slot (enabling it later moves nobody)
    assert {m: s.cron for m, s in by_type.items()} == {
        "bearing": "0 0 2 * * MON", "fan": "0 30 2 * * MON", "pump": "0 0 3 * * MON",
        "slider": "0 30 3 * * MON", "valve": "0 0 3 1 * *"}
    assert [m for m, s in by_type.items() if not s.enabled] == ["pump"]
    assert [s.machine_type for s in expanded.enabled()] == ["bearing", "fan", "slider", "valve"]
    assert by_type["valve"].pinned_revision == "abc123" and by_type["fan"].pinned_revision is None
    for spec in by_type.values():  # the rule's defaults
        assert (spec.profile, spec.max_concurrency, spec.no_catchup) == ("full", 1, True)
    assert by_type["fan"].name == "asdflow-retrain-fan" and expanded.for_machine_type("gearbox") is None
    assert not expanded.narrowed and expanded.unused_overrides == []


def test_narrowing_keeps_every_time_and_overrides_without_data_are_reported(tmp_path):
    schedules = load_schedules(write(tmp_path, GOOD))
    full = {s.machine_type: s.cron for s in schedules.expand(["bearing", "fan", "slider"]).schedules}
    narrowed = schedules.expand(["bearing", "fan", "slider"], only=["slider"])
    assert narrowed.narrowed and [(s.machine_type, s.cron) for s in narrowed.schedules] == [("slider", full["slider"])]
    assert narrowed.unused_overrides == ["pump", "valve"]
    with pytest.raises(ConfigError, match=r"--machine-type pump: not in the data \(found: bearing, fan, slider\)"):
        schedules.expand(["bearing", "fan", "slider"], only=["pump"])


def test_without_stagger_every_machine_type_runs_at_the_rule_time(tmp_path):
    schedules = load_schedules(write(tmp_path, 'rule:\n  cron: "0 */15 * * * *"\n  profile: demo\n'))
    specs = schedules.expand(["fan", "valve"]).schedules
    assert [(s.cron, s.profile) for s in specs] == [("0 */15 * * * *", "demo")] * 2


def test_the_stagger_stays_within_the_day(tmp_path):
    schedules = load_schedules(write(tmp_path, 'rule:\n  cron: "0 0 23 * * *"\n  stagger_minutes: 45\n'))
    assert [s.cron for s in schedules.expand(["a", "b"]).schedules] == ["0 0 23 * * *", "0 45 23 * * *"]
    with pytest.raises(ConfigError, match="c .stagger slot 3. would start 90 min after 23:00, past midnight"):
        schedules.expand(["a", "b", "c"])


def test_a_data_folder_that_cannot_name_a_run_is_refused(tmp_path):
    schedules = load_schedules(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="machine type folder 'my fan' in the data: .*letters, digits"):
        schedules.expand(["my fan"])


def test_bad_cron_names_line_and_field(tmp_path):
    path = write(tmp_path, GOOD.replace('"0 0 3 1 * *"', '"0 0 3 1 *"'))
    with pytest.raises(ConfigError) as err:
        load_schedules(path)
    text = str(err.value)
    assert str(path) in text and "line 6" in text and "overrides.valve.cron" in text
    assert "has 5 fields" in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("pinned:abc123", "pinned:"), ("line 7", "overrides.valve.data_revision", "'latest' or 'pinned:")),
        (("pinned:abc123", "main"), ("line 7", "overrides.valve.data_revision", "'latest' or 'pinned:")),
        (("  stagger_minutes: 30", "  data_revision: HEAD"), ("line 3", "rule.data_revision", "'latest' or 'pinned:")),
        (('  cron: "0 0 2 * * MON"', '  cron: "0 0 2 * *"'), ("line 2", "rule.cron", "lacks the leading seconds")),
        (("  stagger_minutes: 30", "  profile: huge"), ("line 3", "rule.profile")),
        (("  stagger_minutes: 30", "  max_concurrency: 0"), ("line 3", "rule.max_concurrency")),
        (("  stagger_minutes: 30", "  stagger_minutes: -5"), ("line 3", "rule.stagger_minutes")),
        (("  stagger_minutes: 30", "  catchup: true"), ("line 3", "rule.catchup", "unknown key")),
        (("    enabled: false", "    enabeld: false"), ("line 9", "overrides.pump.enabeld", "unknown key")),
        (("    enabled: false", "    stagger_minutes: 5"), ("overrides.pump.stagger_minutes", "unknown key")),
        (("  pump:\n", "  my pump:\n"), ("line 8", "overrides.my pump", "'my pump': use letters, digits")),
        (("  pump:\n", "  ../pump:\n"), ("overrides.../pump", "use letters, digits")),
        (('  cron: "0 0 2 * * MON"', '  cron: "0 0 */2 * * MON"'), ("rule", "stagger_minutes needs a cron with one "
                                                                   "fixed minute and hour")),
        (("rule:\n", "rules:\n"), ("line 1", "rules: unknown key")),
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
    with pytest.raises(ConfigError, match="malformed YAML .* line 2"):
        load_schedules(write(tmp_path, 'rule:\n  cron: "0 0 2 * * MON" x\n'))
    with pytest.raises(ConfigError, match="not found"):
        load_schedules(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping with a 'rule'"):
        load_schedules(write(tmp_path, "- cron: x\n"))
    with pytest.raises(ConfigError, match="rule: Field required"):
        load_schedules(write(tmp_path, "overrides: {}\n"))
    with pytest.raises(ConfigError, match="'schedules' list is the old format: write one 'rule'"):
        load_schedules(write(tmp_path, 'schedules:\n  - machine_type: fan\n    cron: "0 0 2 * * MON"\n'))
    # `overrides:` whose entries are all commented out
    assert load_schedules(write(tmp_path, 'rule:\n  cron: "0 0 2 * * MON"\noverrides:\n#  fan: {}\n')).overrides == {}


def test_spec_normalises_cron_whitespace():
    assert ScheduleSpec(machine_type="fan", cron=" 0  0 2 * * MON ").cron == "0 0 2 * * MON"
