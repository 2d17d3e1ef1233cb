"""fetch: the dataset at one DVC revision, as an artifact every later step reads (asdflow.data.versioning)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def fetch_data(
    project: str,
    data_version: str,
    config_profile: str,
    config_overrides: str,
    data: Output[Dataset],
):
    """Write the project's data folder (`data.data_dir` in the config) as it was at git revision
    `data_version` into `data`, from the DVC cache or remote. `project`: a local checkout or a git
    URL; `data_version`: a git revision (HEAD, a commit, a tag) or `workspace` (the folder as it is,
    local checkouts only)."""
    from asdflow.data.versioning import materialize_data
    from asdflow.pipeline_ops import component_config

    materialize_data(project, data_version, data.path, component_config(config_profile, config_overrides).data)
    data.metadata.update({"project": project, "data_version": data_version})
