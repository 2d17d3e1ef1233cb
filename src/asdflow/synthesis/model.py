"""The Tango model: FLAN-T5 text encoder, mel VAE, HiFi-GAN vocoder, latent diffusion UNet.

All parts are stock diffusers / transformers classes (T5EncoderModel,
AutoencoderKL, SpeechT5HifiGan, UNet2DConditionModel; DDPM to train, DDIM to
sample), wired as Tango wires them: the UNet cross-attends to the T5 states
(with their attention mask), latents are the VAE posterior scaled by its
`scaling_factor`, guidance mixes the prompt's prediction with the empty
prompt's. `build_tiny_tango` makes a random model of the same structure (and a
character-level tokenizer) for tests and the CPU demo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from asdflow.synthesis.config import SynthesisConfig, TinyTangoSizes
from asdflow.synthesis.mel import MelFrontEnd

# Stable Diffusion 2.1's scheduler, which Tango trains and samples with (main_config.json's scheduler_name).
SD21_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
MAX_TEXT_TOKENS = 512  # Tango's tokenizer max_length
# AudioLDM's 16 kHz / 64-bin HiFi-GAN: one mel frame -> 5*4*2*2*2 = 160 samples (the hop)
AUDIOLDM_UPSAMPLE_RATES = [5, 4, 2, 2, 2]
AUDIOLDM_UPSAMPLE_KERNELS = [16, 16, 8, 4, 4]


@dataclass
class TangoModel:
    tokenizer: Any
    text_encoder: torch.nn.Module  # transformers.T5EncoderModel
    vae: torch.nn.Module  # diffusers.AutoencoderKL, 1 channel in and out
    vocoder: torch.nn.Module  # transformers.SpeechT5HifiGan
    unet: torch.nn.Module  # diffusers.UNet2DConditionModel
    mel: MelFrontEnd
    scheduler_config: dict[str, Any] = field(default_factory=lambda: dict(SD21_SCHEDULER))
    source: str = "tiny:0"  # "tiny:<seed>" or the pretrained folder / hub id
    sizes: dict[str, Any] = field(default_factory=dict)  # TinyTangoSizes of a tiny model
    version: str | None = None  # a fine-tuned model's content hash (tango.json)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def vae_downsample(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def frame_multiple(self) -> int:
        """Mel frames must divide by the VAE's and the UNet's downsampling."""
        return self.vae_downsample * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def to(self, device: str | torch.device) -> "TangoModel":
        for part in (self.text_encoder, self.vae, self.vocoder, self.unet, self.mel):
            part.to(device)
        return self

    def eval_all(self) -> "TangoModel":
        for part in (self.text_encoder, self.vae, self.vocoder, self.unet):
            part.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def train_scheduler(self, config: SynthesisConfig | None = None):
        from diffusers import DDPMScheduler

        settings = dict(self.scheduler_config)
        if config is not None:
            settings.update(prediction_type=config.prediction_type, num_train_timesteps=config.train_timesteps)
        return DDPMScheduler.from_config(settings)  # from_config drops keys one scheduler lacks

    def sample_scheduler(self, config: SynthesisConfig | None = None):
        from diffusers import DDIMScheduler

        settings = dict(self.scheduler_config)
        if config is not None:
            settings.update(prediction_type=config.prediction_type, num_train_timesteps=config.train_timesteps)
        return DDIMScheduler.from_config(settings)

    # -- the parts, as Tango uses them ----------------------------------------

    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 last hidden states and the boolean attention mask (padding excluded from cross-attention)."""
        batch = self.tokenizer(prompts, max_length=MAX_TEXT_TOKENS, padding=True, truncation=True,
                               return_tensors="pt")
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        states = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return states, mask.bool()

    def encode_mel(self, mel: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None):
        """(batch, 1, frames, mels) -> scaled latents and the posterior."""
        posterior = self.vae.encode(mel).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mode()
        return latents * self.scaling_factor, posterior

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.scaling_factor).sample

    def mel_to_wave(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, 1, frames, mels) log-mel -> (batch, frames * hop) waveform."""
        return self.vocoder(mel[:, 0])

    def latent_shape(self, n_frames: int) -> tuple[int, int, int]:
        return (int(self.unet.config.in_channels), n_frames // self.vae_downsample,
                self.mel.n_mels // self.vae_downsample)

    @torch.no_grad()
    def sample(self, prompts: list[str], n_frames: int, steps: int, guidance_scale: float,
               generators: list[torch.Generator], config: SynthesisConfig | None = None) -> torch.Tensor:
        """DDIM sampling (eta 0: the clip's seed alone fixes it) with classifier-free guidance
        -> (batch, samples) waveforms; one generator per prompt draws that clip's initial noise."""
        scheduler = self.sample_scheduler(config)
        scheduler.set_timesteps(steps)
        states, mask = self.encode_text(prompts)
        guided = guidance_scale > 1.0
        if guided:
            empty_states, empty_mask = self.encode_text([""] * len(prompts))
            states, mask = _pad_cat(empty_states, states), _pad_cat(empty_mask, mask)
        shape = (len(prompts), *self.latent_shape(n_frames))
        noise = [torch.randn(shape[1:], generator=g, device="cpu") for g in generators]
        latents = torch.stack(noise).to(self.device) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_in = torch.cat([latents] * 2) if guided else latents
            model_in = scheduler.scale_model_input(model_in, t)
            pred = self.unet(model_in, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
            if guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            latents = scheduler.step(pred, t, latents).prev_sample
        mel = self.decode_latents(latents)
        return self.mel_to_wave(mel).float()


def _pad_cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenate two (batch, tokens, ...) tensors along batch, padding the shorter token axis with zeros."""
    n = max(a.shape[1], b.shape[1])

    def pad(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == n:
            return x
        filler = torch.zeros((x.shape[0], n - x.shape[1], *x.shape[2:]), dtype=x.dtype, device=x.device)
        return torch.cat([x, filler], dim=1)

    return torch.cat([pad(a), pad(b)])


# -- the tiny model -----------------------------------------------------------

TINY_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;'-_/()%+"


def tiny_tokenizer():
    """A character-level fast tokenizer (pad 0, eos 1, unk 2, as T5's ids), built offline."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for char in TINY_ALPHABET:
        vocab.setdefault(char, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=MAX_TEXT_TOKENS)


def tiny_parts(sizes: TinyTangoSizes, vocab_size: int, config: SynthesisConfig | None = None) -> dict[str, Any]:
    """The four networks at tiny sizes, randomly initialised from torch's current RNG."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig, T5Config, T5EncoderModel

    config = config or SynthesisConfig()
    text = T5EncoderModel(T5Config(
        vocab_size=vocab_size, d_model=sizes.text_d_model, d_kv=sizes.text_d_model // sizes.text_heads,
        d_ff=2 * sizes.text_d_model, num_layers=sizes.text_layers, num_heads=sizes.text_heads, dropout_rate=0.0,
        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ))
    groups = min(8, *sizes.vae_channels)
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, block_out_channels=tuple(sizes.vae_channels),
        down_block_types=("DownEncoderBlock2D",) * len(sizes.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(sizes.vae_channels),
        layers_per_block=1, latent_channels=sizes.latent_channels, norm_num_groups=groups,
        scaling_factor=1.0,
    )
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(  # AudioLDM's up-sampling (x160 = the hop), fewer channels
        model_in_dim=config.n_mels, sampling_rate=config.sample_rate, upsample_initial_channel=sizes.vocoder_channels,
        upsample_rates=AUDIOLDM_UPSAMPLE_RATES, upsample_kernel_sizes=AUDIOLDM_UPSAMPLE_KERNELS, resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]], normalize_before=False,
    ))
    n = len(sizes.unet_channels)
    unet = UNet2DConditionModel(
        in_channels=sizes.latent_channels, out_channels=sizes.latent_channels,
        block_out_channels=tuple(sizes.unet_channels),
        # cross-attention below the top level only: full-resolution self-attention dominates CPU time
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        layers_per_block=1, cross_attention_dim=sizes.text_d_model, attention_head_dim=sizes.unet_head_dim,
        norm_num_groups=min(8, *sizes.unet_channels), use_linear_projection=True,
    )
    return {"text_encoder": text, "vae": vae, "vocoder": vocoder, "unet": unet}


def build_tiny_tango(seed: int = 0, sizes: TinyTangoSizes | None = None,
                     config: SynthesisConfig | None = None) -> TangoModel:
    """A random Tango of the real structure; the same seed gives the same weights."""
    sizes = sizes or (config.tiny if config is not None else TinyTangoSizes())
    config = config or SynthesisConfig()
    tokenizer = tiny_tokenizer()
    devices = []  # fork_rng: building the model must not move the caller's RNG
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        parts = tiny_parts(sizes, len(tokenizer), config)
    model = TangoModel(tokenizer=tokenizer, mel=MelFrontEnd(config.sample_rate, config.n_fft, config.hop_length,
                                                            config.n_mels),
                       source=f"tiny:{seed}", sizes=sizes.model_dump(), **parts)
    return model.to("cpu").eval_all()


def load_base_model(config: SynthesisConfig, device: str | None = None) -> TangoModel:
    """The model the config names: the pretrained Tango, or a tiny random one built from `config.seed`."""
    if config.model == "tiny":
        model = build_tiny_tango(config.seed, config.tiny, config)
    else:
        from asdflow.synthesis.pretrained import load_pretrained_tango

        model = load_pretrained_tango(config.pretrained, text_encoder=config.text_encoder, config=config)
    return model.to(device or "cpu")


def base_from_source(source: str, sizes: dict[str, Any] | None, config: SynthesisConfig) -> TangoModel:
    """Rebuild the base model a fine-tuned model names in its tango.json."""
    if source.startswith("tiny:"):
        return build_tiny_tango(int(source.split(":", 1)[1]), TinyTangoSizes(**(sizes or {})), config)
    from asdflow.synthesis.pretrained import load_pretrained_tango

    return load_pretrained_tango(source, text_encoder=config.text_encoder, config=config)
