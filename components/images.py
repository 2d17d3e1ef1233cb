"""The images the components run in, named by the project config (`ClusterConfig`).

`infra/docker` builds them under these very names (tests/infra checks it), so a
component's `base_image` and the image on the registry cannot drift apart.

Importing the components reads no config file: `@dsl.component` needs an image at
import time, so components are declared on `ClusterConfig`'s defaults (the names
configs/ must keep, tests/infra), and a pipeline re-targets them to the images of
the config it is built from with `on_image` (`image_names(config)` names them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from asdflow.config import ClusterConfig

if TYPE_CHECKING:
    from asdflow.config import AsdflowConfig

_DEFAULTS = ClusterConfig.model_fields
CPU_IMAGE: str = _DEFAULTS["image_cpu"].default  # every step
GPU_IMAGE: str = _DEFAULTS["image_gpu"].default  # GPU-capable steps (detector training)


class Images(NamedTuple):
    cpu: str
    gpu: str


def image_names(config: AsdflowConfig | ClusterConfig | None = None) -> Images:
    """The CPU and GPU image names of `config` (None: the project config, read now, not at import)."""
    if config is None:
        from asdflow.config import load_config

        config = load_config()
    cluster = config.cluster if hasattr(config, "cluster") else config
    return Images(cpu=cluster.image_cpu, gpu=cluster.image_gpu)
