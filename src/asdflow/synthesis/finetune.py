"""Fine-tune Tango on one machine type's normal clips (the metadata-free Tango report's recipe).

- Text encoder: peft LoRA (rank 32, alpha 8) on T5's attention projections,
  trained by the diffusion loss through the cross-attention.
- VAE: peft LoRA trained by its own reconstruction loss (L1 or L2 on the
  log-mel plus a small KL term), because the diffusion loss never reaches it:
  the latents the UNet learns from are detached.
- UNet: every weight trained with the diffusion loss (v-prediction, as Tango's
  SD 2.1 scheduler), min-SNR weighted (gamma 5); each prompt is replaced by ""
  with probability `prompt_dropout`, so classifier-free guidance has an
  unconditional model to steer from.
- On GPU: gradient checkpointing and bf16/fp16 autocast. On CPU: float32.

Exact resume: every `checkpoint_every` steps the trainable weights, the
optimizer, the data/noise generator and torch's global RNG go to
`<out>/checkpoints/step_NNNNNNN.pt`; a run started on the same folder continues
from the newest one and ends bit-identical to an uninterrupted run (CPU).
The result, `<out>/model/`, holds `text_encoder_lora/`, `vae_lora/` (PEFT
adapter folders), `unet/` (diffusers) and `tango.json` (base model, settings,
version = hash of the weights).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from asdflow.config import AsdflowConfig
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError
from asdflow.progress import progress_bar
from asdflow.synthesis.config import SynthesisConfig
from asdflow.synthesis.mel import normalize_wav
from asdflow.synthesis.model import TangoModel, base_from_source, load_base_model

MODEL_DIR, CHECKPOINT_DIR = "model", "checkpoints"
TEXT_LORA, VAE_LORA, UNET_DIR, MODEL_JSON = "text_encoder_lora", "vae_lora", "unet", "tango.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
KEEP_CHECKPOINTS = 2


class FinetuneResult(BaseModel):
    machine_type: str
    model_dir: str
    version: str
    strategy: str
    steps: int
    n_clips: int
    resumed_from: int | None = None
    final_loss: float | None = None
    losses: list[float] = Field(default_factory=list)  # total loss per step (this run's steps)
    vae_losses: list[float] = Field(default_factory=list)
    seconds: float = 0.0
    steps_per_second: float = 0.0
    device: str = "cpu"


# -- prompts ------------------------------------------------------------------


def read_prompt_table(path: str | Path) -> pd.DataFrame:
    """A prompt table CSV, or a folder holding `prompts.csv` (the prompts stage's output)."""
    path = Path(path)
    csv = path / "prompts.csv" if path.is_dir() else path
    if not csv.is_file():
        found = sorted(path.glob("*.csv")) if path.is_dir() else []
        if len(found) != 1:
            raise DataError(f"no prompt table in {path}: expected prompts.csv")
        csv = found[0]
    table = pd.read_csv(csv)
    missing = {"clip", "strategy", "text"} - set(table.columns)
    if missing:
        raise DataError(f"{csv}: the prompt table lacks column(s) {sorted(missing)}")
    table["text"] = table["text"].fillna("").astype(str)
    return table


def build_prompts(manifest: Manifest, machine_type: str, config: AsdflowConfig,
                  strategies: list[str] | None = None) -> pd.DataFrame:
    """The prompt table from the prompts stage (asdflow.prompts.build_prompt_table)."""
    from asdflow.prompts import build_prompt_table

    return build_prompt_table(manifest, machine_type, config, strategies=strategies)


def clip_prompts(records: list, table: pd.DataFrame, strategy: str) -> tuple[list, list[str]]:
    """The records that have a `strategy` prompt (matched on the table's `clip`: a name or a path), and
    those prompts. Clips without one are left out of training (the prompts stage may cap its clips)."""
    rows = table[table["strategy"] == strategy]
    by_clip = {str(c): str(t) for c, t in zip(rows["clip"], rows["text"])}
    by_name = {Path(str(c)).name: str(t) for c, t in zip(rows["clip"], rows["text"])}
    kept, prompts = [], []
    for record in records:
        text = by_clip.get(record.path) or by_clip.get(record.name) or by_name.get(record.name)
        if text is not None:
            kept.append(record)
            prompts.append(text)
    if not kept:
        raise DataError(f"the prompt table has no {strategy!r} prompt for any of the {len(records)} training "
                        f"clip(s), e.g. {[r.name for r in records[:3]]}")
    return kept, prompts


# -- LoRA ---------------------------------------------------------------------


def lora_config(config: SynthesisConfig, targets: list[str]):
    from peft import LoraConfig

    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=list(targets),
                      lora_dropout=0.0, bias="none")


def add_lora(module: torch.nn.Module, config) -> list[torch.nn.Parameter]:
    """Inject LoRA layers into `module` in place; freeze everything else; return the LoRA parameters."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, module)
    params = []
    for name, param in module.named_parameters():
        param.requires_grad = "lora_" in name
        if param.requires_grad:
            params.append(param)
    return params


def lora_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(module).items()}


def load_lora_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(module, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise DataError(f"LoRA weights do not fit the model: unexpected {unexpected[:3]}")


# -- data ---------------------------------------------------------------------


def real_normal_records(manifest: Manifest, machine_type: str) -> list:
    """The machine type's real (not synthetic) normal training clips, in manifest order; possibly none."""
    return [r for r in manifest.records if r.machine_type == machine_type and r.split == "train"
            and r.label in (None, "normal") and not r.synthetic]


def training_records(manifest: Manifest, machine_type: str) -> list:
    """The machine type's real normal training clips, by path (DataError when there is none)."""
    records = real_normal_records(manifest, machine_type)
    if not records:
        raise DataError(f"no normal training clips of {machine_type!r} in {manifest.root} to fine-tune Tango on")
    return sorted(records, key=lambda r: r.path)


def load_clips(records: list, config: SynthesisConfig, progress: bool = True) -> list[np.ndarray]:
    """The clips at the model's rate, Tango-normalised (zero mean, peak 0.5)."""
    from asdflow.data.audio import load_audio

    return [normalize_wav(load_audio(r.path, config.sample_rate))
            for r in progress_bar(records, desc="loading clips", enabled=progress)]


def _crop_batch(waves: list[np.ndarray], index: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    out = torch.zeros(len(index), length)
    for row, i in enumerate(index.tolist()):
        wav = waves[i]
        start = int(torch.randint(0, max(len(wav) - length, 0) + 1, (1,), generator=generator))
        piece = torch.from_numpy(wav[start: start + length])
        out[row, : len(piece)] = piece
    return out


# -- the training step --------------------------------------------------------


def snr_weights(scheduler, timesteps: torch.Tensor, gamma: float | None, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al.): min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v."""
    if gamma is None:
        return torch.ones(len(timesteps))
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps.cpu()).float()
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    return clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr


def _autocast(device: torch.device, mixed_precision: str):
    if device.type != "cuda" or mixed_precision == "no":
        return torch.autocast(device_type="cpu", enabled=False)
    dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def training_step(model: TangoModel, scheduler, waves: list[np.ndarray], prompts: list[str],
                  config: SynthesisConfig, n_frames: int, generator: torch.Generator,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: returns (total loss, VAE reconstruction loss); every random draw comes from `generator`."""
    length = int(round(config.duration * config.sample_rate))
    index = torch.randint(0, len(waves), (config.batch_size,), generator=generator)
    wav = _crop_batch(waves, index, length, generator).to(device)
    drop = torch.rand(config.batch_size, generator=generator) < config.prompt_dropout
    texts = ["" if d else prompts[i] for i, d in zip(index.tolist(), drop.tolist())]
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    local = torch.Generator(device=device).manual_seed(noise_seed)  # device-side draws, reproducible
    with _autocast(device, config.mixed_precision):
        mel = model.mel(wav, n_frames)
        latents, posterior = model.encode_mel(mel, sample=True, generator=local)
        recon = model.decode_latents(latents)
        diff = recon.float() - mel.float()
        vae_loss = diff.abs().mean() if config.vae_recon_loss == "l1" else diff.pow(2).mean()
        vae_loss = vae_loss + config.vae_kl_weight * posterior.kl().mean()
        latents = latents.detach()  # the diffusion loss must not reach the VAE (its LoRA has its own loss)
        noise = torch.randn(latents.shape, generator=local, device=device, dtype=latents.dtype)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (config.batch_size,),
                                  generator=local, device=device).long()
        noisy = scheduler.add_noise(latents, noise, timesteps)
        states, mask = model.encode_text(texts)
        pred = model.unet(noisy, timesteps, encoder_hidden_states=states, encoder_attention_mask=mask).sample
        target = noise if config.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        weights = snr_weights(scheduler, timesteps, config.snr_gamma, config.prediction_type).to(device)
        diffusion_loss = (per_sample * weights).mean()
    return diffusion_loss + config.vae_loss_weight * vae_loss, vae_loss


# -- checkpoints ----------------------------------------------------------------


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("step_*.pt")) if folder.is_dir() else []


def _save_checkpoint(folder: Path, step: int, model: TangoModel, optimizer, generator: torch.Generator,
                     losses: list[float], vae_losses: list[float], scaler) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "unet": {k: v.detach().cpu().clone() for k, v in model.unet.state_dict().items()},
        "text_lora": lora_state(model.text_encoder),
        "vae_lora": lora_state(model.vae),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "losses": losses,
        "vae_losses": vae_losses,
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    path = folder / f"step_{step:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill while saving leaves the previous checkpoint intact
    for old in _checkpoints(folder)[:-KEEP_CHECKPOINTS]:
        old.unlink()
    return path


def _restore(path: Path, model: TangoModel, optimizer, generator: torch.Generator, scaler) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.unet.load_state_dict(state["unet"])
    load_lora_state(model.text_encoder, state["text_lora"])
    load_lora_state(model.vae, state["vae_lora"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state


# -- the job --------------------------------------------------------------------


def prepare_for_training(model: TangoModel, config: SynthesisConfig) -> list[torch.nn.Parameter]:
    """LoRA on the text encoder and the VAE, the whole UNet trainable; the vocoder stays frozen."""
    text_params = add_lora(model.text_encoder, lora_config(config, config.text_lora_targets))
    vae_params = add_lora(model.vae, lora_config(config, config.vae_lora_targets))
    for param in model.vocoder.parameters():
        param.requires_grad = False
    unet_params = list(model.unet.parameters())
    for param in unet_params:
        param.requires_grad = True
    return text_params + vae_params + unet_params


def finetune_tango(
    manifest: Manifest,
    machine_type: str,
    config: AsdflowConfig,
    out_dir: str | Path,
    prompt_table: pd.DataFrame | None = None,
    *,
    device: str | None = None,
    progress: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
    model: TangoModel | None = None,
) -> FinetuneResult:
    """Fine-tune Tango on `machine_type`'s normal training clips with the configured prompt strategy.

    prompt_table: clip -> text per strategy (None: built by asdflow.prompts). Re-running on the
    same `out_dir` resumes from its newest checkpoint. `on_step(step, loss)` is called after every
    step (a progress hook; an exception there stops the run, as a kill would).
    """
    synth = config.synthesis
    progress = config.progress if progress is None else progress
    out_dir = Path(out_dir)
    device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    records = training_records(manifest, machine_type)
    if prompt_table is None:
        prompt_table = build_prompts(manifest.select(machine_type=machine_type), machine_type, config,
                                     [synth.prompt_strategy])
    records, prompts = clip_prompts(records, prompt_table, synth.prompt_strategy)
    records, prompts = records[: synth.max_clips or None], prompts[: synth.max_clips or None]
    waves = load_clips(records, synth, progress)

    model = model or load_base_model(synth)
    model.to(device_)
    torch.manual_seed(synth.seed)  # LoRA's initial A matrices come from the global RNG
    params = prepare_for_training(model, synth)
    if device_.type == "cuda" and synth.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
        model.text_encoder.gradient_checkpointing_enable()
    model.unet.train()
    model.text_encoder.train()
    model.vae.train()
    optimizer = torch.optim.AdamW(params, lr=synth.learning_rate, weight_decay=synth.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if device_.type == "cuda" and synth.mixed_precision == "fp16" else None
    scheduler = model.train_scheduler(synth)
    n_frames = model.mel.n_frames(synth.duration, model.frame_multiple)
    generator = torch.Generator().manual_seed(synth.seed)

    start, losses, vae_losses, resumed_from = 0, [], [], None
    existing = _checkpoints(out_dir / CHECKPOINT_DIR)
    if existing:
        state = _restore(existing[-1], model, optimizer, generator, scaler)
        start = resumed_from = int(state["step"])
        losses, vae_losses = list(state["losses"]), list(state["vae_losses"])

    started = time.perf_counter()
    from tqdm.auto import tqdm

    # the tqdm object itself (not asdflow.progress's iterator): it shows the running loss
    bar = tqdm(range(start, synth.steps), desc=f"fine-tuning Tango ({machine_type})", disable=not progress,
               initial=start, total=synth.steps, leave=False, dynamic_ncols=True)
    for step in bar:
        loss, vae_loss = training_step(model, scheduler, waves, prompts, synth, n_frames, generator, device_)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, synth.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        vae_losses.append(float(vae_loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", vae=f"{np.mean(vae_losses[-20:]):.4f}")
        done = step + 1
        if done % synth.checkpoint_every == 0 or done == synth.steps:
            _save_checkpoint(out_dir / CHECKPOINT_DIR, done, model, optimizer, generator, losses, vae_losses, scaler)
        if on_step is not None:
            on_step(done, losses[-1])
    seconds = time.perf_counter() - started
    ran = synth.steps - start

    model_dir = save_finetuned(model, out_dir / MODEL_DIR, synth, machine_type,
                               {"steps": synth.steps, "n_clips": len(records), "strategy": synth.prompt_strategy})
    version = model_info(model_dir)["version"]
    return FinetuneResult(
        machine_type=machine_type, model_dir=str(model_dir), version=version, strategy=synth.prompt_strategy,
        steps=synth.steps, n_clips=len(records), resumed_from=resumed_from,
        final_loss=losses[-1] if losses else None, losses=losses[start:], vae_losses=vae_losses[start:],
        seconds=seconds, steps_per_second=ran / seconds if seconds > 0 and ran else 0.0, device=str(device_),
    )


# -- saving and loading the fine-tuned model -----------------------------------------


def save_finetuned(model: TangoModel, folder: str | Path, config: SynthesisConfig, machine_type: str,
                   extra: dict[str, Any] | None = None) -> Path:
    """Adapters (PEFT folders), the UNet (diffusers folder) and tango.json with a content version."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, module, targets in ((TEXT_LORA, model.text_encoder, config.text_lora_targets),
                                  (VAE_LORA, model.vae, config.vae_lora_targets)):
        (folder / name).mkdir(exist_ok=True)
        lora_config(config, targets).save_pretrained(str(folder / name))
        save_file({k: v.contiguous() for k, v in lora_state(module).items()}, str(folder / name / ADAPTER_WEIGHTS))
    model.unet.save_pretrained(folder / UNET_DIR)
    digest = hashlib.sha256()
    for path in (folder / TEXT_LORA / ADAPTER_WEIGHTS, folder / VAE_LORA / ADAPTER_WEIGHTS,
                 *sorted((folder / UNET_DIR).glob("*.safetensors"))):
        digest.update(path.read_bytes())
    meta = {"machine_type": machine_type, "base": model.source, "sizes": model.sizes,
            "version": digest.hexdigest()[:16], "synthesis": config.model_dump(), **(extra or {})}
    (folder / MODEL_JSON).write_text(json.dumps(meta, indent=2))
    return folder


def model_info(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MODEL_JSON
    if not path.is_file():
        raise DataError(f"{folder} is not a fine-tuned Tango: {MODEL_JSON} is missing")
    return json.loads(path.read_text())


def load_finetuned_tango(folder: str | Path, device: str | None = None) -> TangoModel:
    """The base model of tango.json with the saved LoRA adapters and UNet applied."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = model_info(folder)
    config = SynthesisConfig(**meta["synthesis"])
    model = base_from_source(meta["base"], meta.get("sizes"), config)
    for name, module in ((TEXT_LORA, model.text_encoder), (VAE_LORA, model.vae)):
        add_lora(module, LoraConfig.from_pretrained(str(folder / name)))
        load_lora_state(module, load_file(str(folder / name / ADAPTER_WEIGHTS)))
    model.unet = UNet2DConditionModel.from_pretrained(folder / UNET_DIR)
    model.version = meta["version"]
    for param in (p for part in (model.text_encoder, model.vae, model.unet, model.vocoder) for p in part.parameters()):
        param.requires_grad = False
    return model.to(device or "cpu").eval_all()
