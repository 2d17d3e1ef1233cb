"""The images know the commit they were built from (no .git inside them): the build argument
ASDFLOW_GIT_COMMIT becomes the env var MLflow runs record as git_commit and the OCI revision label.

The Dockerfiles are evaluated with dockerfile-parse under build arguments (as `docker build
--build-arg` would), the Bento's template is rendered by BentoML itself, and `make -n images`
shows what the Makefile hands the build script."""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "infra" / "docker"
ARG = "ASDFLOW_GIT_COMMIT"
LABEL = "org.opencontainers.image.revision"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def parsed(text: str, build_args: dict[str, str] | None = None) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(text.encode()), build_args=build_args or {})


def final_stage(parser: DockerfileParser) -> list[dict]:
    structure = parser.structure
    start = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return structure[start:]


def assert_records_the_commit(text: str, where: str, env: bool = True) -> None:
    for build_args, expected in (({ARG: COMMIT}, COMMIT), ({}, "unknown")):
        parser = parsed(text, build_args)
        assert parser.labels.get(LABEL) == expected, f"{where}: LABEL {LABEL} with {build_args or 'no build args'}"
        if env:
            assert parser.envs.get(ARG) == expected, f"{where}: ENV {ARG} with {build_args or 'no build args'}"
    final = final_stage(parsed(text))
    assert f"{ARG}=unknown" in [item["value"] for item in final if item["instruction"] == "ARG"], (
        f"{where}: the final stage must declare ARG {ARG}=unknown (an ARG before FROM does not reach it)")


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_project_images_carry_the_commit_as_env_and_label(name):
    text = (DOCKER / name).read_text()
    assert_records_the_commit(text, name)
    final = final_stage(parsed(text))
    kinds = [item["instruction"] for item in final]
    arg_at = next(i for i, item in enumerate(final) if item["instruction"] == "ARG" and item["value"].startswith(ARG))
    # after every RUN and COPY: a new commit must not rebuild the venv layers
    assert all(kind not in ("RUN", "COPY") for kind in kinds[arg_at:]), f"{name}: ARG {ARG} must come after RUN/COPY"


def test_mlflow_image_is_labelled_with_the_commit():
    assert_records_the_commit((DOCKER / "Dockerfile.mlflow").read_text(), "Dockerfile.mlflow", env=False)


def test_bento_container_carries_the_commit(tmp_path):
    pytest.importorskip("bentoml")
    from bentoml._internal.bento.build_config import CondaOptions, DockerOptions
    from bentoml._internal.container.generate import generate_containerfile

    options = DockerOptions(distro="debian", python_version="3.11", system_packages=["libsndfile1"],
                            dockerfile_template="serving/Dockerfile.template").with_defaults()
    rendered = generate_containerfile(options, str(ROOT), conda=CondaOptions().with_defaults(), bento_fs=tmp_path)
    assert_records_the_commit(rendered, "serving/Dockerfile.template (rendered)")


def head_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@pytest.mark.parametrize("target", ["images", "images-push"])
def test_make_images_hands_the_head_commit_to_the_build(target):
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    (line,) = [line for line in dry.stdout.splitlines() if "scripts/build_images.sh" in line]
    assert f"{ARG}={head_commit()}" in shlex.split(line), line


def test_build_script_passes_the_commit_to_every_image():
    printed = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_images.sh"), "--dry-run"],
        capture_output=True, text=True, timeout=120,
        env={"PY": sys.executable, "PATH": "/usr/bin:/bin", ARG: COMMIT},
    )
    assert printed.returncode == 0, printed.stderr
    builds = [shlex.split(line) for line in printed.stdout.splitlines() if line.startswith("docker build")]
    assert len(builds) == 3
    for command in builds:
        assert f"{ARG}={COMMIT}" in [command[i + 1] for i, word in enumerate(command) if word == "--build-arg"]
