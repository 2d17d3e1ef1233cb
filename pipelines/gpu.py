"""Cluster settings of pipeline tasks, all read from `ClusterConfig` (never hard-coded).

- GPU-capable steps: accelerator type and limit, the GPU node pool's node selector and
  its taint's toleration (`GpuConfig`; infra/terraform builds the pool from the same
  values, and tests/infra checks that they agree).
- Secrets as env vars: MLflow's on steps that talk to the tracking server, the DVC
  remote's on steps that read the dataset (`ClusterConfig.mlflow_secret`/`dvc_secret`,
  every listed key becomes an env var of the same name).

kfp.local ignores all of this; tests/pipelines checks it in the compiled YAML.
"""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask

from asdflow.config import ClusterConfig, GpuConfig


def on_gpu(task: PipelineTask, gpu: GpuConfig) -> PipelineTask:
    """Ask for `gpu.accelerator_limit` accelerators of `gpu.accelerator_type` on the GPU node pool."""
    task.set_accelerator_type(gpu.accelerator_type)
    task.set_accelerator_limit(gpu.accelerator_limit)
    kubernetes.add_node_selector(task, label_key=gpu.node_selector_key, label_value=gpu.node_selector_value)
    kubernetes.add_toleration(
        task, key=gpu.toleration_key, operator="Equal", value=gpu.toleration_value, effect=gpu.toleration_effect
    )
    return task


def with_mlflow_secret(task: PipelineTask, cluster: ClusterConfig) -> PipelineTask:
    return kubernetes.use_secret_as_env(
        task, secret_name=cluster.mlflow_secret, secret_key_to_env={k: k for k in cluster.mlflow_secret_keys}
    )


def with_dvc_secret(task: PipelineTask, cluster: ClusterConfig) -> PipelineTask:
    return kubernetes.use_secret_as_env(
        task, secret_name=cluster.dvc_secret, secret_key_to_env={k: k for k in cluster.dvc_secret_keys}
    )
