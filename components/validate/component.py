"""validate: Great Expectations on the dataset before anything trains on it (asdflow.validation)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate_data(
    data: Input[Dataset],
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    manifest: Output[Dataset],
    report: Output[Artifact],
    isolate: bool = False,
) -> List[str]:
    """Validate the fetched clips of `machine_type` ("" = every machine type found; "fan,valve" = those);
    stop the run naming every failing clip and expectation. Returns the machine types validated
    (the fleet runs one branch per machine type on it). `isolate` (the fleet): a machine type whose
    clips fail is left out, named in the log and the report, and the others go on.

    `manifest`: the clips later stages use (without the quarantined ones when
    `validation.quarantine` is on), by their paths inside `data`. `report`:
    validation.json/.html, clip_stats.csv and quarantine.json.
    """
    from asdflow.pipeline_ops import component_config
    from asdflow.validation import validate_stage

    chosen = [m.strip() for m in machine_type.split(",") if m.strip()]
    result = validate_stage(data.path, component_config(config_profile, config_overrides), report.path,
                            manifest_dir=manifest.path, machine_types=chosen or None, isolate=isolate)
    for machine, checks in result.failed_machine_types.items():
        print(f"validation: {machine} left out of this run (failed: {', '.join(checks)}; see {report.path})")
    found = result.kept_manifest.machine_types()
    manifest.metadata.update({"n_clips": result.n_kept, "n_quarantined": len(result.quarantined),
                              "machine_types": found, "failed_machine_types": list(result.failed_machine_types)})
    return found
