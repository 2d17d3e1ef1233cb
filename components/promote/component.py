"""promote: move `@champion` to the challenger the gate chose, if the champion did not change meanwhile."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def promote_champion(
    decision: Input[Artifact],
    config_profile: str,
    config_overrides: str,
    promotion: Output[Artifact],
) -> str:
    """Apply the gate's decision (asdflow.registry.gate.apply_decision): re-read `@champion`, refuse if it
    moved since the gate, else move it and record the previous champion. `promotion`: the decision record
    with its outcome. Returns the champion's version afterwards."""
    from asdflow.pipeline_ops import component_config
    from asdflow.registry.gate import apply_decision_file

    outcome = apply_decision_file(decision.path, promotion.path, component_config(config_profile, config_overrides))
    return outcome.promotion.version if outcome.promotion else outcome.champion_version_seen or ""
