"""Train the Conv-TasNet separator with negative SI-SNR; checkpoints and exact resume.

A checkpoint (out_dir/checkpoints/step_NNNNNN.pt) holds the model, the optimizer, the
AMP scaler, torch's RNG states and the step. Batches are a pure function of
(seed, step) (see mixtures.py), so resuming from the last checkpoint reaches the same
weights as an uninterrupted run. The finished separator is written to out_dir/separator/.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from asdflow.config import SeparationConfig
from asdflow.data.manifest import Manifest, ManifestProblem
from asdflow.errors import ConfigError
from asdflow.separation.losses import neg_si_snr_loss
from asdflow.separation.mixtures import MixtureSource, load_mixture_source
from asdflow.separation.model import SIZE_FIELDS, build_separator, save_separator

CHECKPOINTS = "checkpoints"
SEPARATOR = "separator"
KEEP_CHECKPOINTS = 2  # the newest ones; older checkpoints are deleted


@dataclass
class SeparatorTrainResult:
    separator_dir: Path
    steps: int
    losses: list[float]  # per step of this call (a resumed call lists only its own steps)
    final_loss: float | None
    resumed_from: int | None
    seconds: float
    steps_per_second: float
    machine_types: list[str]
    version: str
    skipped: list[ManifestProblem] = field(default_factory=list)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = sorted((Path(out_dir) / CHECKPOINTS).glob("step_*.pt"))
    return found[-1] if found else None


def _save_checkpoint(path: Path, step: int, model, optimizer, scaler, config: SeparationConfig, machine_types: list[str]) -> None:
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "sizes": {k: getattr(config, k) for k in SIZE_FIELDS},
        "machine_types": machine_types,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a kill mid-write never leaves a truncated "latest" checkpoint
    for old in sorted(path.parent.glob("step_*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink()  # a full-size model with Adam state is tens of MB per checkpoint


def _restore(path: Path, model, optimizer, scaler, config: SeparationConfig) -> int:
    state = torch.load(path, map_location="cpu", weights_only=False)
    sizes = {k: getattr(config, k) for k in SIZE_FIELDS}
    if state["sizes"] != sizes:
        raise ConfigError(f"{path}: checkpoint sizes {state['sizes']} differ from the config's {sizes}; use another out_dir")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    return int(state["step"])


def train_steps(model, optimizer, scaler, source: MixtureSource, start: int, stop: int, device: torch.device,
                on_step=None, progress: bool = True, grad_clip: float | None = None) -> list[float]:
    """Steps start+1..stop; returns their losses. on_step(step) runs after each (checkpointing).

    grad_clip: the largest L2 norm of the gradients (the paper clips at 5); None: no clipping.
    """
    use_amp = device.type == "cuda"  # mixed precision only where it pays and is supported
    losses: list[float] = []
    model.train()
    # tqdm itself (not asdflow.progress.progress_bar's iterator) so the bar can show the running loss
    bar = tqdm(range(start + 1, stop + 1), desc="separator", disable=not progress, leave=False, dynamic_ncols=True)
    for step in bar:
        mixtures, references = source.batch(step)
        mix = torch.from_numpy(mixtures).unsqueeze(1).to(device)
        ref = torch.from_numpy(references).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            estimates = model(mix)
        loss = neg_si_snr_loss(estimates, ref)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)  # clip the true gradients, not the AMP-scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.2f}")  # running mean of the last 20 steps; a step outlasts a redraw
        if on_step is not None:
            on_step(step)
    return losses


def train_separator(
    manifest: Manifest,
    config: SeparationConfig,
    out_dir: str | Path,
    progress: bool = True,
    machine_types: list[str] | None = None,
    resume: bool = True,
) -> SeparatorTrainResult:
    """Train (or resume) a separator on mixtures of the manifest's supplemental clips; writes out_dir/separator/."""
    source = load_mixture_source(manifest, config, machine_types)
    return train_on_source(source, config, out_dir, progress=progress, resume=resume,
                           extra={"data_root": str(manifest.root)})


def train_on_source(
    source: MixtureSource,
    config: SeparationConfig,
    out_dir: str | Path,
    progress: bool = True,
    resume: bool = True,
    extra: dict | None = None,
) -> SeparatorTrainResult:
    """Train (or resume) on any MixtureSource (e.g. pools of real clips a benchmark assembles); writes out_dir/separator/.

    `extra` goes into separator.json beside the sizes and version.
    """
    out = Path(out_dir)
    device = _device()
    torch.manual_seed(config.seed)
    model = build_separator(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    start, resumed_from = 0, None
    last = latest_checkpoint(out) if resume else None
    if last is not None:
        start = resumed_from = _restore(last, model, optimizer, scaler, config)
        model.to(device)
    if start > config.steps:
        raise ConfigError(f"{last}: the checkpoint is at step {start}, past the configured {config.steps} steps")

    def checkpoint(step: int) -> None:
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save_checkpoint(out / CHECKPOINTS / f"step_{step:06d}.pt", step, model, optimizer, scaler, config, source.machine_types)

    began = time.perf_counter()
    losses = train_steps(model, optimizer, scaler, source, start, config.steps, device, checkpoint, progress,
                         grad_clip=config.grad_clip)
    seconds = time.perf_counter() - began
    final_loss = losses[-1] if losses else None
    separator_dir = save_separator(model, config, out / SEPARATOR, extra={
        "steps": config.steps, "machine_types": source.machine_types, "final_loss": final_loss, **(extra or {}),
    })
    version = json.loads((separator_dir / "separator.json").read_text())["version"]
    return SeparatorTrainResult(
        separator_dir=separator_dir, steps=config.steps, losses=losses, final_loss=final_loss,
        resumed_from=resumed_from, seconds=seconds,
        steps_per_second=len(losses) / seconds if losses and seconds > 0 else 0.0,
        machine_types=source.machine_types, version=version, skipped=source.skipped,
    )
