"""The images (infra/docker): parsed with dockerfile-parse and checked against the project.

No Docker engine runs here, so nothing is built; what can be checked without one is:
the lock is what gets installed, base images are pinned, the final stage runs as a
non-root user without build tools, every COPY source exists and passes the
.dockerignore, the entrypoint is the project's console script, and the HEALTHCHECK
one-liner really tells a ready server from one that is not.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from asdflow.config import ClusterConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "infra" / "docker"
LOCK = ROOT / "requirements.lock"
SERVING_IMAGES = ("Dockerfile.cpu", "Dockerfile.cuda")
ALL_IMAGES = (*SERVING_IMAGES, "Dockerfile.mlflow")
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|cmake|clang|[\w.+-]+-dev)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]


def stages(name: str) -> list[Stage]:
    with open(DOCKER / name, "rb") as handle:
        structure = DockerfileParser(fileobj=handle).structure
    result: list[Stage] = []
    for item in structure:
        kind, value = item["instruction"], item["value"]
        if kind == "FROM":
            parts = value.split()
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append(Stage(base=parts[0], name=alias))
        elif kind != "COMMENT" and result:
            result[-1].instructions.append((kind, value))
    return result


def exec_form(value: str) -> list[str]:
    return json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)


def copy_sources(stage: Stage) -> list[str]:
    sources = []
    for value in stage.values("COPY"):
        words = [w for w in shlex.split(value) if not w.startswith("--")]
        if any(w.startswith("--from") for w in shlex.split(value)):
            continue
        sources.extend(words[:-1])
    return sources


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_multi_stage_with_pinned_bases(name):
    parsed = stages(name)
    assert len(parsed) >= 2, f"{name}: needs a builder stage and a final stage"
    assert parsed[0].name, f"{name}: the builder stage must be named (FROM ... AS builder)"
    aliases = {stage.name for stage in parsed if stage.name}
    for stage in parsed:
        if stage.base in aliases:
            continue
        image = stage.base
        assert "$" not in image, f"{name}: base image {image!r} must be spelled out, not an ARG"
        if "@sha256:" in image:
            continue
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest", f"{name}: base image {image!r} is not pinned to a tag or digest"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{name}: base tag {tag!r} must carry a full version (x.y.z)"
    final = parsed[-1]
    assert any(v.startswith("--from=") for v in final.values("COPY")), f"{name}: final stage copies nothing from the builder"


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_final_stage_is_lean_and_not_root(name):
    final = stages(name)[-1]
    users = final.values("USER")
    assert users, f"{name}: the final stage never sets USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{name}: final USER is {users[-1]!r}"
    for run in final.values("RUN"):
        assert "pip install" not in run, f"{name}: pip runs in the final stage (caches, build tools): {run[:80]}"
        if "apt-get install" in run:
            installed = run.split("apt-get install", 1)[1].split("&&", 1)[0]
            assert not BUILD_TOOLS.search(installed), f"{name}: build tools in the final stage: {installed.strip()}"
            assert "rm -rf /var/lib/apt/lists/*" in run, f"{name}: apt lists left in the final stage"
    builder_runs = " ".join(stages(name)[0].values("RUN"))
    for run in stages(name)[0].values("RUN"):
        if "pip install" in run:
            builder_env = " ".join(stages(name)[0].values("ENV"))
            assert "PIP_NO_CACHE_DIR=1" in builder_env or "--no-cache-dir" in run, f"{name}: pip cache kept"
    assert builder_runs


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_copied_files_exist_and_pass_the_dockerignore(name):
    ignore = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]

    def included(path: str) -> bool:
        keep = True  # later patterns win, as in Docker
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch(path, pat) or path.startswith(pat + "/"):
                keep = negate
        return keep

    for stage in stages(name):
        for source in copy_sources(stage):
            assert (ROOT / source).exists(), f"{name}: COPY {source} but {source} is not in the repository"
            assert included(source), f"{name}: COPY {source} but {name}.dockerignore leaves it out of the context"


def lock_names(lines: list[str]) -> set[str]:
    return {line.split("==")[0].lower() for line in lines if "==" in line and not line.startswith("#")}


def test_cpu_image_installs_the_lock_with_the_cpu_torch():
    builder = stages("Dockerfile.cpu")[0]
    runs = builder.values("RUN")
    assert "requirements.lock" in copy_sources(builder)
    install = next(run for run in runs if "-r requirements.lock" in run)
    assert "--no-deps" in install, "the lock is the whole closure: --no-deps"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in install
    assert "torch==2.13.0+cpu" in LOCK.read_text().splitlines(), "the CPU image expects the lock's CPU torch"
    assert any(run.startswith("pip install --no-deps .") for run in runs), "the project itself, not editable"
    assert any("python scripts/fix_vendor_installs.py" in run for run in runs), "vendor fix-ups (both steps)"


def test_cuda_image_swaps_in_a_matching_torch_pair_from_the_same_lock(tmp_path):
    builder = stages("Dockerfile.cuda")[0]
    runs = builder.values("RUN")
    swap = next(run for run in runs if "requirements.lock" in run)
    # Run the Dockerfile's own filter on the real lock: exactly torch and torchaudio go.
    grep = re.search(r"(grep -viE '[^']+' requirements\.lock)", swap)
    assert grep, "the CUDA install must filter torch/torchaudio out of requirements.lock"
    kept = subprocess.run(grep.group(1), shell=True, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    removed = lock_names(LOCK.read_text().splitlines()) - lock_names(kept.splitlines())
    assert removed == {"torch", "torchaudio"}, f"the filter removes {sorted(removed)}"
    assert "pip install --no-deps -r /tmp/requirements-without-torch.lock" in swap
    pair = dict(re.findall(r'"(torch|torchaudio)==([^"]+)"', swap))
    assert pair == {"torch": "2.11.0+cu128", "torchaudio": "2.11.0+cu128"}, pair
    assert "--index-url https://download.pytorch.org/whl/cu128" in swap
    assert "-c /tmp/requirements-without-torch.lock" in swap, "the pair's dependencies must not move lock pins"
    joined = " ".join(runs)
    assert "scripts/fix_vendor_installs.py" not in joined.replace("COPY", ""), "no torchaudio pure-Python step here"
    assert "laion_clap_offline" in joined
    vendor = (ROOT / "scripts" / "fix_vendor_installs.py").read_text()
    assert "def laion_clap_offline(" in vendor and "def torchaudio_pure_python(" in vendor


def test_mlflow_image_takes_mlflow_from_the_lock():
    builder = stages("Dockerfile.mlflow")[0]
    install = next(run for run in builder.values("RUN") if "pip install" in run)
    assert "-c /tmp/requirements.lock" in install and re.search(r"\bmlflow\b", install)
    assert re.search(r"^mlflow==3\.", LOCK.read_text(), re.M), "server and clients share the lock's MLflow"
    for extra in ("psycopg2-binary==", "boto3=="):
        assert extra in install, f"the server needs {extra.rstrip('=')} pinned"


@pytest.mark.parametrize("name", SERVING_IMAGES)
def test_entrypoint_is_the_project_console_script(name):
    final = stages(name)[-1]
    entrypoint = exec_form(final.values("ENTRYPOINT")[-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["asdflow"] and "asdflow" in scripts
    env = " ".join(final.values("ENV"))
    assert "ASDFLOW_CONFIG_DIR=/app/configs" in env and "PATH=/opt/venv/bin:$PATH" in env
    assert "configs" in copy_sources(final) and final.values("WORKDIR")[-1] == "/app"
    module = scripts["asdflow"].split(":")[0]
    if find_spec(module) is None:
        pytest.skip(f"{module} is not written yet: the CMD's subcommand cannot be checked")
    command = exec_form(final.values("CMD")[-1])
    flags = [word for word in command if word.startswith("--")]
    helped = subprocess.run(
        [str(Path(sys.executable).parent / "asdflow"), command[0], "--help"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},  # rich help must not wrap option names
    )
    assert helped.returncode == 0, f"`asdflow {command[0]} --help` failed: {helped.stderr[-500:]}"
    for flag in flags:
        assert flag in helped.stdout, f"{name}: CMD passes {flag} but `asdflow {command[0]}` has no such option"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path in ("/readyz", "/livez", "/health") else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def run_healthcheck(name: str, port: int | None, default_port: int) -> int:
    value = stages(name)[-1].values("HEALTHCHECK")[-1]
    command = exec_form(value.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"], f"{name}: HEALTHCHECK must be the python one-liner (no curl in the image)"
    code = command[2].replace(f":{default_port}/", f":{port or 9}/")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


@pytest.mark.parametrize(("name", "port", "path"), [
    ("Dockerfile.cpu", 3000, "/readyz"),
    ("Dockerfile.cuda", 3000, "/readyz"),
    ("Dockerfile.mlflow", 5000, "/health"),
])
def test_healthcheck_tells_ready_from_not_ready(name, port, path):
    final = stages(name)[-1]
    assert final.values("HEALTHCHECK"), f"{name}: no HEALTHCHECK"
    assert f"127.0.0.1:{port}{path}" in final.values("HEALTHCHECK")[-1]
    assert str(port) in final.values("EXPOSE")[-1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Health.status = 200
        assert run_healthcheck(name, server.server_port, port) == 0
        _Health.status = 503
        assert run_healthcheck(name, server.server_port, port) != 0
    finally:
        server.shutdown()
        server.server_close()
    assert run_healthcheck(name, None, port) != 0  # nothing listening


def test_image_names_come_from_config():
    cluster = load_config().cluster
    defaults = ClusterConfig()
    names = [cluster.image_cpu, cluster.image_gpu, cluster.image_mlflow]
    assert names == [defaults.image_cpu, defaults.image_gpu, defaults.image_mlflow], "configs/ must not rename images"
    assert len(set(names)) == 3
    for image in names:
        assert re.fullmatch(r"[a-z0-9.-]+(/[a-z0-9._-]+)+:[\w.-]+", image), f"{image!r} is not registry/name:tag"
    printed = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_images.sh"), "--dry-run"],
        capture_output=True, text=True, timeout=120, env={"PY": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    assert printed.returncode == 0, printed.stderr
    builds = [shlex.split(line) for line in printed.stdout.splitlines() if line.startswith("docker build")]
    built = {cmd[cmd.index("--file") + 1]: cmd[cmd.index("--tag") + 1] for cmd in builds}
    assert built == {
        "infra/docker/Dockerfile.cpu": cluster.image_cpu,
        "infra/docker/Dockerfile.cuda": cluster.image_gpu,
        "infra/docker/Dockerfile.mlflow": cluster.image_mlflow,
    }
    assert all(cmd[-1] == "." for cmd in builds), "the build context is the repository root"


def test_make_images_without_an_engine_says_why_and_fails():
    # A socket that cannot exist stands for "no engine", whatever this machine has.
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_images.sh")],
        capture_output=True, text=True, timeout=120,
        env={"PY": sys.executable, "PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "make images: cannot build" in result.stderr
    assert "Docker engine" in result.stderr or "no 'docker' command" in result.stderr
    assert "docker build" not in result.stdout
