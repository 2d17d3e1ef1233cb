#!/usr/bin/env bash
# Build (and with --push, push) the asdflow images: `make images`.
# The tags come from asdflow's config (ClusterConfig.image_cpu / image_gpu / image_mlflow),
# the same values the KFP components use as base_image and infra/k8s deploys, so the
# names can never drift apart.
#
#   scripts/build_images.sh             build the three images
#   scripts/build_images.sh --push      build, then push them
#   scripts/build_images.sh --dry-run   print the docker commands, run nothing (no engine needed)
#   ASDFLOW_CONFIG=my.yaml ...          take the names from a user config file
#
# Needs a Docker engine with BuildKit (for the <Dockerfile>.dockerignore beside each
# Dockerfile). Without one it says so and exits 2.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

push=0
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --push) push=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build_images.sh: unknown argument '$arg' (use --push, --dry-run)" >&2; exit 64 ;;
  esac
done

if [[ -n "${PY:-}" ]]; then
  python="$PY"
elif [[ -x .venv/bin/python ]]; then
  python=.venv/bin/python
else
  python=python3
fi

# One line per image: "<dockerfile> <tag>", read from the config.
if ! images="$("$python" - <<'PYEOF'
import os
from asdflow.config import load_config

cluster = load_config(os.environ.get("ASDFLOW_CONFIG") or None).cluster
print("infra/docker/Dockerfile.cpu", cluster.image_cpu)
print("infra/docker/Dockerfile.cuda", cluster.image_gpu)
print("infra/docker/Dockerfile.mlflow", cluster.image_mlflow)
PYEOF
)"; then
  echo "build_images.sh: could not read the image names from the asdflow config (is the venv installed? run 'make install')" >&2
  exit 1
fi

run() {
  if (( dry_run )); then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

if (( ! dry_run )); then
  if ! command -v docker >/dev/null 2>&1; then
    echo "make images: cannot build: no 'docker' command on this machine. Install Docker (engine + BuildKit) and run again." >&2
    exit 2
  fi
  if ! docker_error="$(docker info 2>&1 >/dev/null)"; then
    echo "make images: cannot build: no Docker engine is reachable ('docker info' failed: ${docker_error##*$'\n'})." >&2
    echo "Start a Docker engine here, or run 'make images' on a machine that has one. The tags would be:" >&2
    while read -r dockerfile tag; do echo "  $tag  <- $dockerfile" >&2; done <<<"$images"
    exit 2
  fi
fi

# The commit the images are built from (the runs' git_commit, the OCI revision label):
# $ASDFLOW_GIT_COMMIT as `make images` sets it, else this checkout's HEAD.
commit="${ASDFLOW_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"

export DOCKER_BUILDKIT=1
while read -r dockerfile tag; do
  run docker build --file "$dockerfile" --tag "$tag" --build-arg "ASDFLOW_GIT_COMMIT=$commit" .
done <<<"$images"

if (( push )); then
  while read -r _ tag; do
    run docker push "$tag"
  done <<<"$images"
fi
