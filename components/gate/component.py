"""gate: challenger against the current champion, both re-scored here on the same clips (asdflow.registry.gate)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gate_challenger(
    data: Input[Dataset],  # the fetched clips: as an input, KFP materializes them at the paths the manifest names
    manifest: Input[Dataset],
    machine_type: str,
    challenger_version: str,
    config_profile: str,
    config_overrides: str,
    decision: Output[Artifact],
) -> str:
    """Score challenger `challenger_version` (or several, "3,4,5": the best of them stands) and
    `@champion` on the manifest's labelled test clips of `machine_type`; apply the floor and
    minimum improvement of `gate` in the config.
    `decision`: gate_decision.json (both scores, thresholds, verdict, reason).
    Returns the verdict: promote | keep | reject. Moves no alias."""
    from asdflow.data.manifest import Manifest
    from asdflow.pipeline_ops import component_config
    from asdflow.registry.gate import run_gate

    config = component_config(config_profile, config_overrides)
    result = run_gate(machine_type, Manifest.load(manifest.path), config, decision.path,
                      challenger_version=challenger_version, progress=config.progress)
    decision.metadata.update({"verdict": result.verdict, "reason": result.reason})
    return result.verdict
