"""fetch: the dataset at one DVC revision, as an artifact every later step reads (asdflow.data.versioning)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from typing import NamedTuple

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
) -> NamedTuple("FetchOutputs", [("lineage", str)]):
    """Write the project's data folder (`data.data_dir` in the config) as it was at git revision
    `data_version` into `data`, from the DVC cache or remote. `project`: a local checkout or a git
    URL; `data_version`: a git revision (HEAD, a commit, a tag) or `workspace` (the folder as it is,
    local checkouts only).

    The revision is resolved to its commit first and the data read at that commit, so what was
    read is what is recorded: `data/.asdflow-lineage.json` and the `lineage` output (DataLineage
    JSON: requested revision, commit, data.dvc's hash there) say which data this run has. A named
    output, not `Output`: kfp.local (2.17) mixes up two tasks' `Output` inside a ParallelFor."""
    from asdflow.data.versioning import materialize_data, resolve_data_lineage, write_lineage
    from asdflow.pipeline_ops import component_config

    config = component_config(config_profile, config_overrides).data
    lineage = resolve_data_lineage(project, data_version, config)
    materialize_data(project, lineage.commit, data.path, config)
    write_lineage(data.path, lineage)
    data.metadata.update({"project": project, "data_version": data_version})
    return (lineage.model_dump_json(),)
