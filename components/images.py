"""The images the components run in, named by the project config (`ClusterConfig`).

`infra/docker` builds them under these very names (tests/infra checks it), so a
component's `base_image` and the image on the registry cannot drift apart. A
pipeline built from another config re-targets the components with `on_image`.
"""

from __future__ import annotations

from asdflow.config import load_config

_CLUSTER = load_config().cluster
CPU_IMAGE = _CLUSTER.image_cpu  # every step
GPU_IMAGE = _CLUSTER.image_gpu  # GPU-capable steps (detector training)
