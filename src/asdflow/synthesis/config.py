"""Tango text-to-audio: model sizes or pretrained paths, fine-tuning, generation.

Imported by asdflow.config: keep this module free of heavy imports.

The class defaults are the metadata-free Tango report's settings on the real
pretrained Tango (declare-lab/tango: FLAN-T5-large, the AudioLDM VAE and
HiFi-GAN, 16 kHz, 10 s, n_fft 1024, hop 160, 64 mel bins); the tiny and demo
profiles swap the pretrained model for a random one of the same structure.
"""

from typing import Literal

from pydantic import Field, field_validator

from asdflow.config_base import StrictModel

PromptStrategy = Literal["template", "spectral", "metadata", "clap_ranked"]


class TinyTangoSizes(StrictModel):
    """Sizes of the random model `build_tiny_tango` makes (same classes as the real one)."""

    text_d_model: int = Field(32, ge=8)
    text_layers: int = Field(2, ge=1)
    text_heads: int = Field(2, ge=1)
    vae_channels: list[int] = Field(default_factory=lambda: [8, 16, 16])  # 3 levels: /4 in time and frequency, as AudioLDM
    latent_channels: int = Field(4, ge=1)
    unet_channels: list[int] = Field(default_factory=lambda: [32, 64])
    unet_head_dim: int = Field(8, ge=1)
    vocoder_channels: int = Field(32, ge=4)


class SynthesisConfig(StrictModel):
    """Tango text-to-audio: model sizes or pretrained paths, fine-tuning, generation."""

    enabled: bool = False  # the pipeline fine-tunes, generates and adds synthetic normals to training
    # -- the model ------------------------------------------------------------
    # "pretrained": `pretrained` is a local folder in the declare-lab/tango layout or a hub id;
    # "tiny": a random model of the same structure (`tiny` sizes), built from `seed`.
    model: Literal["pretrained", "tiny"] = "pretrained"
    pretrained: str = "declare-lab/tango"
    text_encoder: str | None = None  # overrides main_config.json's text_encoder_name (google/flan-t5-large)
    tiny: TinyTangoSizes = Field(default_factory=TinyTangoSizes)
    # -- audio (Tango / AudioLDM front-end; the vocoder expects exactly this) ------
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    duration: float = Field(10.0, gt=0)  # seconds per training crop and generated clip
    # -- fine-tuning ------------------------------------------------------------
    prompt_strategy: PromptStrategy = "template"  # the prompt table strategy used for training
    lora_rank: int = Field(32, ge=1)
    lora_alpha: float = Field(8.0, gt=0)
    text_lora_targets: list[str] = Field(default_factory=lambda: ["q", "k", "v", "o"])  # T5 attention
    vae_lora_targets: list[str] = Field(
        default_factory=lambda: ["conv1", "conv2", "to_q", "to_k", "to_v", "to_out.0"]
    )
    vae_recon_loss: Literal["l1", "l2"] = "l1"
    vae_kl_weight: float = Field(1e-6, ge=0)
    vae_loss_weight: float = Field(1.0, ge=0)
    snr_gamma: float | None = Field(5.0, gt=0)  # min-SNR weighting (Tango); None: plain MSE
    prompt_dropout: float = Field(0.1, ge=0, lt=1)  # empty prompt, so guidance has an unconditional model
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"  # Tango's (SD 2.1) scheduler
    train_timesteps: int = Field(1000, ge=10)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(3e-5, gt=0)  # Tango's fine-tuning rate
    weight_decay: float = Field(1e-2, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(200, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"  # on GPU only; CPU always trains in float32
    gradient_checkpointing: bool = True  # on GPU only
    max_clips: int | None = None  # cap on training clips per machine type (None: all)
    # -- generation ------------------------------------------------------------
    strategies: list[PromptStrategy] = Field(default_factory=lambda: ["template", "spectral", "metadata", "clap_ranked"])
    clips_per_strategy: int = Field(100, ge=1)
    guidance_scale: float = Field(3.0, ge=1)
    inference_steps: int = Field(200, ge=1)  # DDIM steps (Tango's default)
    generate_batch_size: int = Field(4, ge=1)
    match_level: bool = True  # scale each clip to the median RMS of the real normal training clips
    # -- quality checks and use ------------------------------------------------
    near_duplicate_cosine: float = Field(0.995, gt=0, le=1)
    clipping_level: float = Field(0.999, gt=0, le=1)
    add_to_training: bool = False  # detector training adds the generated normals (extra_train)
    register_model: bool = True  # register the fine-tuned model as tango-<machine_type>
    model_name_template: str = "tango-{machine_type}"
    num_threads: int | None = 1  # torch threads on CPU while fine-tuning / generating (None: torch's default)
    seed: int = Field(0, ge=0)

    @field_validator("strategies")
    @classmethod
    def _distinct(cls, strategies: list[str]) -> list[str]:
        if not strategies or len(set(strategies)) != len(strategies):
            raise ValueError(f"strategies {strategies}: give at least one, each once")
        return strategies
