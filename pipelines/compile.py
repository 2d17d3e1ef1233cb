"""Compile a pipeline to its YAML package; its digest identifies what a schedule runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kfp import compiler
from kfp.dsl.graph_component import GraphComponent


def compile_pipeline(pipeline: GraphComponent, package_path: str | Path) -> Path:
    """Write the pipeline's IR YAML (what `kfp.Client` submits and the KFP UI uploads)."""
    path = Path(package_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
    return path


def package_digest(package_path: str | Path) -> str:
    """sha256 of the compiled package: the same code and config give the same bytes."""
    return hashlib.sha256(Path(package_path).read_bytes()).hexdigest()
