"""The base of every config section (kept apart so section modules can import it without a cycle)."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    # A typo in a YAML key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")
