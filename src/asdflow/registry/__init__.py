"""MLflow tracking and model registry: runs, the pyfunc detector, the gate, promotion.

Submodules import mlflow lazily where they can; import from them directly, e.g.
`from asdflow.registry.gate import run_gate`.
"""

from asdflow.registry.gate import GateDecision, apply_decision, apply_decision_file, run_gate
from asdflow.registry.models import (
    CHALLENGER,
    CHAMPION,
    ChampionChangedError,
    Comparison,
    ModelVersionInfo,
    PromotionResult,
    RegisteredDetector,
    RegistryError,
    compare,
    list_models,
    model_name,
    promote,
    register_detector,
    rollback,
)
from asdflow.registry.stages import register_stage
from asdflow.registry.tracking import (
    TrackingError,
    TrainingRun,
    configure_tracking,
    log_training_run,
    resolve_tracking,
    ui_hint,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "ChampionChangedError",
    "Comparison",
    "GateDecision",
    "ModelVersionInfo",
    "PromotionResult",
    "RegisteredDetector",
    "RegistryError",
    "TrackingError",
    "TrainingRun",
    "apply_decision",
    "apply_decision_file",
    "compare",
    "configure_tracking",
    "list_models",
    "log_training_run",
    "model_name",
    "promote",
    "register_detector",
    "register_stage",
    "resolve_tracking",
    "rollback",
    "run_gate",
    "ui_hint",
]
