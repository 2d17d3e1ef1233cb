"""The Great Expectations suites, built from `ValidationConfig`, and the runner.

Two tables are validated, each by its own suite:
- the clip table (one row per clip: manifest columns + `clip_stats`): every
  clip-level expectation, whose failing rows name clips, plus "the manifest has
  clips";
- the group table (one row per machine type x split x domain x label with its
  clip count): both domains present and the minimum counts. Failing rows name
  groups, and no clip can be blamed for them, so quarantine cannot fix them.

GX 1.x row conditions (`Column("split") == "train"`) work on pandas frames in
1.24 (string row conditions are deprecated since 1.9), so per-machine durations
and "train clips are normal" are plain conditioned expectations.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import pandas as pd

from asdflow.config import ValidationConfig
from asdflow.data.manifest import Domain, Label, Split

LABELS = list(get_args(Label))
DOMAINS = list(get_args(Domain))
SPLITS = list(get_args(Split))
COUNTED_SPLITS = ("train", "test")  # supplemental and unlabelled clips are not counted
GROUP_COLUMNS = ["group", "machine_type", "split", "domain", "label", "count"]

Level = Literal["clip", "dataset"]


@dataclass
class Planned:
    """One expectation and how to explain its failures to a person."""

    key: str  # stable identifier, e.g. "duration[fan]"
    description: str  # "duration of fan clips in [9.0, 11.0] s"
    expectation: Any  # a great_expectations Expectation
    level: Level
    explain_column: str | None = None  # its value is shown as "got ..." for a failing row
    explain_as: str = "got"


@dataclass
class Outcome:
    """What GX said about one planned expectation, with row indices mapped back."""

    planned: Planned
    table: str  # which registered table it ran on ("clips" or "groups")
    success: bool
    kwargs: dict[str, Any]
    failing_rows: list[int] = field(default_factory=list)  # index labels of the validated frame
    observed: str | None = None
    error: str | None = None


def _gxe():
    import great_expectations.expectations as gxe

    return gxe


def _column(name: str):
    from great_expectations.expectations.row_conditions import Column

    return Column(name)


def clip_suite(config: ValidationConfig, machine_types: list[str]) -> list[Planned]:
    """Expectations whose failures are individual clips (and can be quarantined)."""
    gxe, col = _gxe(), _column
    plan = [
        Planned("rows", "the manifest lists at least one clip", gxe.ExpectTableRowCountToBeBetween(min_value=1), "dataset"),
        Planned(
            "readable", "the file is readable audio",
            gxe.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]), "clip", "read_error",
            explain_as="soundfile says",
        ),
        Planned(
            "sample_rate", f"sample rate is {config.sample_rate} Hz",
            gxe.ExpectColumnValuesToBeInSet(column="stat_sample_rate", value_set=[config.sample_rate]),
            "clip", "stat_sample_rate",
        ),
        Planned(
            "channels", f"channels is {config.channels}",
            gxe.ExpectColumnValuesToBeInSet(column="stat_channels", value_set=[config.channels]),
            "clip", "stat_channels",
        ),
    ]
    # Durations: one expectation per machine type with its own range, one for all the others.
    overridden = sorted(m for m in machine_types if m in config.duration_by_machine)
    for machine in overridden:
        low, high = config.duration_by_machine[machine]
        plan.append(Planned(
            f"duration[{machine}]", f"duration of {machine} clips in [{low:g}, {high:g}] s",
            gxe.ExpectColumnValuesToBeBetween(
                column="stat_duration", min_value=low, max_value=high, row_condition=col("machine_type") == machine
            ),
            "clip", "stat_duration",
        ))
    others = col("machine_type").is_not_in(overridden) if overridden else None
    plan += [
        Planned(
            "duration", f"duration in [{config.min_duration:g}, {config.max_duration:g}] s"
            + (f" (machine types other than {', '.join(overridden)})" if overridden else ""),
            gxe.ExpectColumnValuesToBeBetween(
                column="stat_duration", min_value=config.min_duration, max_value=config.max_duration,
                row_condition=others,
            ),
            "clip", "stat_duration",
        ),
        Planned(
            "finite", "no NaN or infinite samples",
            gxe.ExpectColumnValuesToBeBetween(column="nonfinite", min_value=0, max_value=0), "clip", "nonfinite",
        ),
        Planned(
            "not_silent", f"RMS above {config.rms_floor:g} (not silent)",
            gxe.ExpectColumnValuesToBeBetween(column="rms", min_value=config.rms_floor, strict_min=True),
            "clip", "rms",
        ),
        Planned(
            "not_clipped", f"clipping ratio (|x| >= {config.clipping_level:g}) at most {config.max_clipping_ratio:g}",
            gxe.ExpectColumnValuesToBeBetween(column="clipping_ratio", max_value=config.max_clipping_ratio),
            "clip", "clipping_ratio",
        ),
        Planned(
            "label_allowed", f"label in {LABELS}",
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=LABELS), "clip", "label",
        ),
        Planned(
            "domain_allowed", f"domain in {DOMAINS}",
            gxe.ExpectColumnValuesToBeInSet(column="domain", value_set=DOMAINS), "clip", "domain",
        ),
        Planned(
            "split_allowed", f"split in {SPLITS}",
            gxe.ExpectColumnValuesToBeInSet(column="split", value_set=SPLITS), "clip", "split",
        ),
        Planned(
            "train_labelled", "train clips are labelled",
            gxe.ExpectColumnValuesToNotBeNull(column="label", row_condition=col("split") == "train"), "clip", "label",
        ),
        Planned(
            "train_normal", "train clips are normal only",
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=["normal"], row_condition=col("split") == "train"),
            "clip", "label",
        ),
        Planned(
            "unique_name", "file name unique within its machine type",
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["machine_type", "name"]), "clip", "name",
        ),
    ]
    return plan


def group_suite(config: ValidationConfig, machine_types: list[str], unlabelled_test: set[str] = frozenset()
                ) -> list[Planned]:
    """Dataset-level expectations on the group table: dropping clips can never fix these.

    `unlabelled_test`: machine types whose test clips carry no labels (an evaluation set): their
    test clips are counted as one group and need not show both domains."""
    gxe, col = _gxe(), _column
    plan: list[Planned] = []
    if config.require_both_domains:
        for machine in machine_types:
            for split in COUNTED_SPLITS:
                if split == "test" and machine in unlabelled_test:
                    continue
                plan.append(Planned(
                    f"both_domains[{machine}/{split}]", f"{machine} {split} clips cover both domains {DOMAINS}",
                    gxe.ExpectColumnDistinctValuesToContainSet(
                        column="domain", value_set=DOMAINS,
                        row_condition=(col("machine_type") == machine) & (col("split") == split) & (col("count") > 0),
                    ),
                    "dataset",
                ))
    plan += [
        Planned(
            "min_train", f"at least {config.min_train_per_domain} normal train clips per machine type and domain",
            gxe.ExpectColumnValuesToBeBetween(
                column="count", min_value=config.min_train_per_domain, row_condition=col("split") == "train"
            ),
            "dataset", "count",
        ),
        Planned(
            "min_test",
            f"at least {config.min_test_per_domain_and_label} test clips per machine type, domain and label "
            "present (a plant's data without labelled anomalies passes; unlabelled test clips count as one group)",
            gxe.ExpectColumnValuesToBeBetween(
                column="count", min_value=config.min_test_per_domain_and_label, row_condition=col("split") == "test"
            ),
            "dataset", "count",
        ),
    ]
    return plan


UNLABELLED_GROUP = "unlabelled"  # the domain and label of an evaluation set's unlabelled test clips


def unlabelled_test(clips: pd.DataFrame, machine_types: list[str]) -> set[str]:
    """Machine types with test clips and not one labelled among them (an evaluation set)."""
    test = clips[clips["split"] == "test"]
    labelled = set(test[test["domain"].notna() & test["label"].notna()]["machine_type"])
    return {m for m in machine_types if m in set(test["machine_type"]) and m not in labelled}


def group_table(clips: pd.DataFrame, machine_types: list[str]) -> pd.DataFrame:
    """Clip counts per machine type x split x domain x label, zeros included, so that a
    missing group is a row with count 0 rather than an absent row nobody checks.

    Train counts only normal clips (anomalies there are clip failures of their own). Test
    counts the labels the machine type's test split has: a plant has normals and no labelled
    anomalies (the gate then simulates them), and an evaluation set has only unlabelled clips,
    counted as one group; a test split with no clip at all still shows zero normals."""
    labelled = clips[clips["domain"].notna() & clips["label"].notna()]
    counts = labelled.groupby(["machine_type", "split", "domain", "label"]).size().to_dict()
    unlabelled = unlabelled_test(clips, machine_types)
    test_clips = clips[clips["split"] == "test"]
    rows = []
    for machine in machine_types:
        if machine in unlabelled:
            n = int((test_clips["machine_type"] == machine).sum())
            rows.append([f"{machine}/test/{UNLABELLED_GROUP}", machine, "test", UNLABELLED_GROUP, UNLABELLED_GROUP, n])
        has_anomalies = any(counts.get((machine, "test", d, "anomaly"), 0) for d in DOMAINS)
        for split in COUNTED_SPLITS:
            if split == "test" and machine in unlabelled:
                continue
            labels = ["normal"] if split == "train" or not has_anomalies else LABELS
            for domain in DOMAINS:
                for label in labels:
                    count = int(counts.get((machine, split, domain, label), 0))
                    rows.append([f"{machine}/{split}/{domain}/{label}", machine, split, domain, label, count])
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


class GxRunner:
    """One ephemeral GX context per validation call, with a data source and one
    dataframe asset per table; each suite is registered once and run on any frame."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        # asdflow shows its own progress; GX's per-metric bars would flood the logs of a pipeline step
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.source = self.context.data_sources.add_pandas("asdflow")
        self._definitions: dict[str, Any] = {}
        self._plans: dict[str, dict[str, Planned]] = {}

    def register(self, table: str, plan: list[Planned]) -> None:
        gx = self._gx
        batch = self.source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(f"{table}-all")
        suite = self.context.suites.add(gx.ExpectationSuite(name=f"asdflow-{table}"))
        for item in plan:
            item.expectation.meta = {"asdflow_key": item.key}
            item.expectation.description = item.description
            suite.add_expectation(item.expectation)
        self._definitions[table] = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"asdflow-{table}", data=batch, suite=suite)
        )
        self._plans[table] = {item.key: item for item in plan}

    def run(self, table: str, frame: pd.DataFrame) -> list[Outcome]:
        """Outcomes in the order the suite was planned (GX reorders its results)."""
        plans = self._plans[table]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GX deprecation chatter on pandas 3
            result = self._definitions[table].run(
                batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"}
            )
        by_key: dict[str, Outcome] = {}
        for item in result.results:
            config = item.expectation_config
            planned = plans[config.meta["asdflow_key"]]
            info = item.exception_info or {}
            error = info.get("exception_message") if info.get("raised_exception") else None
            details = item.result or {}
            by_key[planned.key] = Outcome(
                planned=planned,
                table=table,
                success=bool(item.success) and error is None,
                kwargs=_json_safe({k: v for k, v in config.kwargs.items() if k != "batch_id"}),
                failing_rows=[int(i) for i in details.get("unexpected_index_list") or []],
                observed=_observed(details),
                error=error,
            )
        return [by_key[key] for key in plans]


def _observed(details: dict[str, Any]) -> str | None:
    if details.get("partial_missing_list"):
        return f"missing {details['partial_missing_list']}"
    if "observed_value" in details and details["observed_value"] is not None:
        return str(details["observed_value"])
    return None


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
