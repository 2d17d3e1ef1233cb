"""Data validation with Great Expectations 1.x: per-clip statistics, the suite, the reports.

GX is imported lazily (inside `validate_dataset`), so importing this package is cheap.
"""

from asdflow.validation.validate import (
    ExpectationResult,
    QuarantinedClip,
    ValidationResult,
    raise_on_failure,
    validate_dataset,
    validate_stage,
)

__all__ = ["ExpectationResult", "QuarantinedClip", "ValidationResult", "raise_on_failure", "validate_dataset", "validate_stage"]
