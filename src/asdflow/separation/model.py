"""The Conv-TasNet separator: two outputs in a fixed order (0 machine, 1 noise), saved with its sizes."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch
from torchaudio.models import ConvTasNet

from asdflow.config import SeparationConfig
from asdflow.errors import DetectorError
from asdflow.separation import SOURCES

WEIGHTS = "separator.pt"
INFO = "separator.json"
SIZE_FIELDS = ("N", "L", "B", "H", "P", "X", "R", "sample_rate")


def build_separator(config: SeparationConfig) -> ConvTasNet:
    """Conv-TasNet with the paper's names mapped to torchaudio's arguments."""
    return ConvTasNet(
        num_sources=len(SOURCES),
        enc_kernel_size=config.L,
        enc_num_feats=config.N,
        msk_kernel_size=config.P,
        msk_num_feats=config.B,
        msk_num_hidden_feats=config.H,
        msk_num_layers=config.X,
        msk_num_stacks=config.R,
    )


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 of the serialised state dict: the separator's version."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def save_separator(model: torch.nn.Module, config: SeparationConfig, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write separator.pt (weights) and separator.json (sizes, sources, version) into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / WEIGHTS)
    info = {
        "family": "convtasnet",
        "sources": list(SOURCES),
        "config": config.model_dump(mode="json"),
        "version": weights_hash(model),
        **(extra or {}),
    }
    (out / INFO).write_text(json.dumps(info, indent=2))
    return out


def load_separator(separator_dir: str | Path, device: str = "cpu") -> tuple[ConvTasNet, dict]:
    """The model (eval mode) and its separator.json; DetectorError when missing or inconsistent."""
    folder = Path(separator_dir)
    if not (folder / INFO).is_file() or not (folder / WEIGHTS).is_file():
        raise DetectorError(f"{folder}: not a separator folder (needs {INFO} and {WEIGHTS})")
    try:
        info = json.loads((folder / INFO).read_text())
        config = SeparationConfig(**info["config"])
        model = build_separator(config)
        model.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    except (ValueError, KeyError, RuntimeError) as err:
        raise DetectorError(f"{folder}: cannot load the separator: {err}") from err
    return model.to(device).eval(), info
