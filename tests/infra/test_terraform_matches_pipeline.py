"""The GPU node pool (infra/terraform/gke, read with python-hcl2) and the pipeline's GPU
settings (asdflow.config.GpuConfig, which the kfp-kubernetes calls use) must agree:
a GPU step tolerates exactly the pool's taint and selects exactly the pool's label, or it
either never schedules or lands on the wrong nodes. Terraform itself cannot run here
(`terraform init` needs the provider registry), so this reads the HCL.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from asdflow.config import PROFILES, GpuConfig, load_config


def _sibling(name: str):
    # pytest runs with --import-mode=importlib: test modules cannot import each other by name.
    spec = importlib.util.spec_from_file_location(f"_infra_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


manifests = _sibling("test_manifests")  # kustomize rendering of the overlays

ROOT = Path(__file__).resolve().parents[2]
GKE = ROOT / "infra" / "terraform" / "gke"
# GKE's taint effects in Terraform spelling -> Kubernetes spelling.
EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}
GKE_POOL_LABEL = "cloud.google.com/gke-nodepool"  # GKE sets it on every node to the pool's name


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string quotes; drop them so values compare as written."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value


def load_module(folder: Path) -> dict[str, list]:
    merged: dict[str, list] = {}
    for tf in sorted(folder.glob("*.tf")):
        with tf.open() as handle:
            for key, blocks in hcl2.load(handle).items():
                merged.setdefault(key, []).extend(blocks)
    return unquote(merged)


MODULE = load_module(GKE)
VARIABLES = {name: body.get("default") for block in MODULE["variable"] for name, body in block.items()}


def resolve(value: Any) -> Any:
    """`${var.x}` -> the variable's default (the values this repository deploys)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{var\.(\w+)\}", value)
        if match:
            assert match.group(1) in VARIABLES, f"undeclared variable {match.group(1)}"
            return VARIABLES[match.group(1)]
    return value


def resources(kind: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for block in MODULE["resource"]:
        for resource_type, named in block.items():
            if resource_type == kind:
                found.update(named)
    return found


def gpu_pools() -> list[dict]:
    pools = resources("google_container_node_pool")
    return [pool for pool in pools.values() if pool["node_config"][0].get("guest_accelerator")]


def only_gpu_pool() -> dict:
    pools = gpu_pools()
    assert len(pools) == 1, f"expected one GPU node pool, found {len(pools)}"
    return pools[0]


def gpu_configs() -> dict[str, GpuConfig]:
    return {f"profile {p}": load_config(profile=p).cluster.gpu for p in PROFILES} | {"defaults": GpuConfig()}


def test_gpu_pool_taint_is_what_the_pipeline_tolerates():
    taints = only_gpu_pool()["node_config"][0]["taint"]
    assert len(taints) == 1, "one taint: a GPU step tolerates exactly one"
    taint = {k: resolve(v) for k, v in taints[0].items()}
    for where, gpu in gpu_configs().items():
        assert taint["key"] == gpu.toleration_key, where
        assert taint["value"] == gpu.toleration_value, where
        assert EFFECTS[taint["effect"]] == gpu.toleration_effect, where


def test_gpu_pool_carries_the_label_the_pipeline_selects():
    pool = only_gpu_pool()
    labels = {k: resolve(v) for k, v in pool["node_config"][0].get("labels", {}).items()}
    assert GKE_POOL_LABEL not in labels, "GKE sets the node-pool label itself and rejects it in labels"
    for where, gpu in gpu_configs().items():
        if gpu.node_selector_key == GKE_POOL_LABEL:
            assert resolve(pool["name"]) == gpu.node_selector_value, f"{where}: pool name is the selected label"
        else:
            assert labels.get(gpu.node_selector_key) == gpu.node_selector_value, f"{where}: label missing on the pool"


def test_gpu_pool_has_nvidia_gpus_with_drivers_and_scales_from_zero():
    pool = only_gpu_pool()
    accelerator = pool["node_config"][0]["guest_accelerator"][0]
    assert str(resolve(accelerator["type"])).startswith("nvidia-")
    assert accelerator["gpu_driver_installation_config"][0]["gpu_driver_version"] in ("LATEST", "DEFAULT")
    for where, gpu in gpu_configs().items():
        # GKE's device plugin exposes the GPUs as nvidia.com/gpu; one step must fit on one node.
        assert gpu.accelerator_type == "nvidia.com/gpu", where
        assert int(resolve(accelerator["count"])) >= gpu.accelerator_limit, where
    autoscaling = pool["autoscaling"][0]
    low = autoscaling.get("total_min_node_count", autoscaling.get("min_node_count"))
    high = resolve(autoscaling.get("total_max_node_count", autoscaling.get("max_node_count")))
    assert low == 0 and int(high) >= 1, "the GPU pool scales from zero"
    assert pool.get("initial_node_count", 0) == 0


def test_cpu_pool_is_untainted_so_detectors_and_cpu_steps_land_there():
    pools = resources("google_container_node_pool")
    cpu = [p for p in pools.values() if not p["node_config"][0].get("guest_accelerator")]
    assert cpu and all(not p["node_config"][0].get("taint") for p in cpu)
    assert all(resolve(p["autoscaling"][0]["min_node_count"]) >= 1 for p in cpu), "MLflow and KFP need a node"


def test_workload_identity_matches_the_prod_service_accounts():
    accounts = resources("google_service_account")
    bindings = resources("google_service_account_iam_member")
    members = {}
    for binding in bindings.values():
        match = re.fullmatch(r"serviceAccount:\$\{var\.project_id\}\.svc\.id\.goog\[(.+)/(.+)\]", binding["member"])
        assert match, binding["member"]
        gsa = re.fullmatch(r"\$\{google_service_account\.(\w+)\.name\}", binding["service_account_id"]).group(1)
        members[(match.group(1), match.group(2))] = accounts[gsa]["account_id"]
    assert members, "no Workload Identity binding"
    for (namespace, name), account_id in members.items():
        ksa = manifests.find("prod", "ServiceAccount", name, namespace)
        annotation = ksa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert annotation == f"{account_id}@REPLACE_ME_PROJECT.iam.gserviceaccount.com", (namespace, name)
    assert ("kubeflow", load_config().cluster.service_account) in members


def test_prod_buckets_are_the_ones_terraform_creates():
    buckets = {b["name"] for b in resources("google_storage_bucket").values()}
    destination = manifests.configmap("prod", "mlflow-server")["data"]["MLFLOW_ARTIFACTS_DESTINATION"]
    as_terraform = destination.removeprefix("gs://").replace("REPLACE_ME_PROJECT", "${var.project_id}")
    assert as_terraform in buckets, f"{destination} is not a bucket infra/terraform/gke creates"


def test_terraform_is_formatted():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary here: formatting not checked (the HCL is still parsed above)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", str(GKE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"terraform fmt would change: {result.stdout}"
