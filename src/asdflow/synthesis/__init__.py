"""Tango text-to-audio: model sizes or pretrained paths, fine-tuning, generation.

- `model`: TangoModel (T5 text encoder, mel VAE, HiFi-GAN vocoder, UNet; DDPM/DDIM,
  classifier-free guidance), `build_tiny_tango(seed)`;
- `pretrained`: `load_pretrained_tango(folder_or_hub_id)` for the declare-lab/tango
  layout, `save_tango_layout` (writes it);
- `finetune`: `finetune_tango(...)` (LoRA text encoder + LoRA VAE + full UNet, exact
  resume), `load_finetuned_tango(folder)`;
- `generate`: `generate_normals(...)`, `synthetic_manifest(root)`;
- `quality`: `quality_report(...)`, `frechet_distance(a, b)`;
- `stages`: `finetune_stage`, `generate_stage` (what the CLI and components call).

`asdflow.config` imports `asdflow.synthesis.config`, which runs this file first: it
imports nothing heavy.
"""
