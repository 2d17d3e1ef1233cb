"""KFP pipelines of asdflow: build (from a config), compile, run locally, submit, schedule.

- `training.build_training_pipeline(config)`: one machine type, fetch -> ... -> gate -> promote;
- `fleet.build_fleet_pipeline(config)`: every machine type with ParallelFor;
- `compile.compile_pipeline`; `local.run_locally` (kfp.local); `remote.submit_run` and
  `remote.reconcile_schedules` (a KFP server, through kfp.Client).

The command-line shell (asdflow/cli_pipeline.py, the demo) imports this package lazily
from the project root; the library in src/asdflow never imports it at module level.
"""

from pipelines.fleet import build_fleet_pipeline
from pipelines.training import PROMOTE, TrainingOutputs, build_training_pipeline

__all__ = ["PROMOTE", "TrainingOutputs", "build_fleet_pipeline", "build_training_pipeline"]
