"""Read (and write) Tango checkpoints in the declare-lab/tango layout.

The hub repository `declare-lab/tango` (and a local copy of it) holds:

    main_config.json         {"text_encoder_name": "google/flan-t5-large", "scheduler_name":
                              "stabilityai/stable-diffusion-2-1", "unet_model_config_path":
                              "configs/diffusion_model_config.json", "snr_gamma": 5.0, ...}
    vae_config.json          AudioLDM VAE: {"embed_dim": 8, "ddconfig": {...}, "scale_factor": 0.92...}
    stft_config.json         {"filter_length": 1024, "hop_length": 160, "n_mel_channels": 64, ...}
    pytorch_model_main.bin   "unet.*" (diffusers UNet2DConditionModel) and "text_encoder.*" (T5EncoderModel)
    pytorch_model_vae.bin    the AudioLDM VAE in its original (LDM) naming, with its HiFi-GAN as "vocoder.*"
    pytorch_model_stft.bin   TacotronSTFT buffers ("mel_basis", ...)

The UNet config lives in Tango's code repository, not in the weights repository:
it is read from `<folder>/<unet_model_config_path>` when present, else Tango's
published config (TANGO_UNET_CONFIG) is used. The VAE is converted with
diffusers' own LDM converter; the vocoder's `ups.*` become SpeechT5HifiGan's
`upsampler.*` (as diffusers' AudioLDM conversion does). The tokenizer and T5
config come from `text_encoder_name` (a hub id or a folder), the T5 weights
from the main checkpoint (or the text encoder itself when it has none there).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from asdflow.errors import ConfigError
from asdflow.synthesis.config import SynthesisConfig
from asdflow.synthesis.mel import MelFrontEnd
from asdflow.synthesis.model import AUDIOLDM_UPSAMPLE_KERNELS, AUDIOLDM_UPSAMPLE_RATES, SD21_SCHEDULER, TangoModel

MAIN_CONFIG, VAE_CONFIG, STFT_CONFIG = "main_config.json", "vae_config.json", "stft_config.json"
MAIN_WEIGHTS, VAE_WEIGHTS, STFT_WEIGHTS = "pytorch_model_main.bin", "pytorch_model_vae.bin", "pytorch_model_stft.bin"
LDM_NORM_GROUPS = 32  # AudioLDM's Normalize(); a config may say otherwise (tiny models) with ddconfig.norm_num_groups
HIFIGAN_DILATIONS = [1, 3, 5]  # AudioLDM's 16 kHz / 64-bin HiFi-GAN: dilations (1, 3, 5) in every resblock

# Tango's configs/diffusion_model_config.json (declare-lab/tango), used when the folder lacks it.
TANGO_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 8,
    "sample_size": [32, 2],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
    "upcast_attention": True,
}


def resolve_folder(source: str | Path) -> Path:
    """A local folder as is; otherwise a hub id, downloaded (or found in the local cache)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or str(source).startswith((".", "~")):
        raise ConfigError(f"Tango checkpoint folder {path} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=str(source),
                                      allow_patterns=["*.json", "*.bin", "configs/*"]))
    except Exception as err:  # offline, unknown id, no permission: one clear line
        raise ConfigError(f"cannot fetch the Tango checkpoint {source!r} from the hub ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); give a local folder in "
                          f"synthesis.pretrained") from None


def _json(folder: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads((folder / name).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a Tango checkpoint: {name} is missing") from None


def _weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    path = folder / name
    if not path.is_file():
        raise ConfigError(f"{folder} is not a Tango checkpoint: {name} is missing")
    return torch.load(path, map_location="cpu", weights_only=True)


def vae_diffusers_config(vae_config: dict[str, Any]) -> dict[str, Any]:
    """AudioLDM's vae_config.json -> diffusers AutoencoderKL arguments."""
    dd = vae_config["ddconfig"]
    channels = [int(dd["ch"]) * int(m) for m in dd["ch_mult"]]
    return {
        "in_channels": int(dd.get("in_channels", 1)),
        "out_channels": int(dd.get("out_ch", 1)),
        "block_out_channels": channels,
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "layers_per_block": int(dd["num_res_blocks"]),
        "latent_channels": int(vae_config["embed_dim"]),
        "norm_num_groups": int(dd.get("norm_num_groups", LDM_NORM_GROUPS)),
        "scaling_factor": float(vae_config.get("scale_factor", 1.0)),
    }


def vocoder_config_from_weights(weights: dict[str, torch.Tensor], n_mels: int, sample_rate: int, hop_length: int):
    """SpeechT5HifiGanConfig read off AudioLDM HiFi-GAN weights. Shapes give the channels and kernel
    sizes; strides and dilations are not in the weights: AudioLDM's kernels (16, 16, 8, 4, 4) mean its
    rates (5, 4, 2, 2, 2), other kernels are taken as 2 x the rate; the rates must multiply to the hop."""
    from transformers import SpeechT5HifiGanConfig

    ups = sorted({int(m[1]) for k in weights if (m := re.match(r"ups\.(\d+)\.weight$", k))})
    kernels = [int(weights[f"ups.{i}.weight"].shape[-1]) for i in ups]
    rates = list(AUDIOLDM_UPSAMPLE_RATES) if kernels == AUDIOLDM_UPSAMPLE_KERNELS else [k // 2 for k in kernels]
    if math.prod(rates) != hop_length:
        raise ConfigError(f"HiFi-GAN up-sampling kernels {kernels} (rates {rates}) do not make one mel frame "
                          f"{hop_length} samples: not an AudioLDM vocoder for this hop")
    n_blocks = len({int(m[1]) for k in weights if (m := re.match(r"resblocks\.(\d+)\.", k))})
    per_up = n_blocks // max(len(ups), 1)
    res_kernels = [int(weights[f"resblocks.{j}.convs1.0.weight"].shape[-1]) for j in range(per_up)]
    n_convs = len({int(m[1]) for k in weights if (m := re.match(r"resblocks\.0\.convs1\.(\d+)\.weight$", k))})
    return SpeechT5HifiGanConfig(
        model_in_dim=n_mels, sampling_rate=sample_rate,
        upsample_initial_channel=int(weights["conv_pre.weight"].shape[0]),
        upsample_rates=rates, upsample_kernel_sizes=kernels,
        resblock_kernel_sizes=res_kernels, resblock_dilation_sizes=[HIFIGAN_DILATIONS[:n_convs]] * per_up,
        normalize_before=False,
    )


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_pretrained_tango(source: str | Path, text_encoder: str | None = None,
                          config: SynthesisConfig | None = None) -> TangoModel:
    """Load Tango from a folder in the declare-lab/tango layout or from a hub id (see the module doc)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from transformers import AutoTokenizer, SpeechT5HifiGan, T5Config, T5EncoderModel

    config = config or SynthesisConfig()
    folder = resolve_folder(source)
    main, vae_cfg, stft = _json(folder, MAIN_CONFIG), _json(folder, VAE_CONFIG), _json(folder, STFT_CONFIG)
    expected = {"sampling_rate": config.sample_rate, "filter_length": config.n_fft, "hop_length": config.hop_length,
                "n_mel_channels": config.n_mels}
    wrong = {k: (stft.get(k), v) for k, v in expected.items() if stft.get(k) is not None and int(stft[k]) != v}
    if wrong:
        raise ConfigError(f"{folder / STFT_CONFIG} disagrees with the synthesis config (file, config): {wrong}")

    name = text_encoder or main.get("text_encoder_name") or "google/flan-t5-large"
    name = str(folder / name) if (folder / name).is_dir() else name  # relative to the checkpoint folder
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        t5_config = T5Config.from_pretrained(name)
    except OSError as err:
        raise ConfigError(f"cannot load the text encoder {name!r}: {str(err).splitlines()[0]}") from None

    main_weights = _weights(folder, MAIN_WEIGHTS)
    unet_config = dict(TANGO_UNET_CONFIG)
    config_path = main.get("unet_model_config_path")
    if config_path and (folder / config_path).is_file():
        unet_config = json.loads((folder / config_path).read_text())
    unet = UNet2DConditionModel.from_config(unet_config)
    _load(unet, _prefixed(main_weights, "unet."), folder / MAIN_WEIGHTS, "unet")

    text_weights = _prefixed(main_weights, "text_encoder.")
    if text_weights:
        text = T5EncoderModel(t5_config)
        _load(text, text_weights, folder / MAIN_WEIGHTS, "text_encoder")
    else:  # a checkpoint that left the frozen text encoder out: take the encoder's own weights
        text = T5EncoderModel.from_pretrained(name)

    vae_weights = _weights(folder, VAE_WEIGHTS)
    vae = AutoencoderKL(**vae_diffusers_config(vae_cfg))
    ldm = {k: v for k, v in vae_weights.items() if not k.startswith("vocoder.")}
    _load(vae, convert_ldm_vae_checkpoint(ldm, dict(vae.config)), folder / VAE_WEIGHTS, "vae")

    hifigan = _prefixed(vae_weights, "vocoder.")
    if not hifigan:
        raise ConfigError(f"{folder / VAE_WEIGHTS} holds no vocoder.* weights (AudioLDM keeps its HiFi-GAN there)")
    vocoder = SpeechT5HifiGan(vocoder_config_from_weights(hifigan, config.n_mels, config.sample_rate,
                                                          config.hop_length))
    converted = {k.replace("ups.", "upsampler."): v for k, v in hifigan.items()}
    converted["mean"], converted["scale"] = torch.zeros(config.n_mels), torch.ones(config.n_mels)
    _load(vocoder, converted, folder / VAE_WEIGHTS, "vocoder")

    basis = None
    if (folder / STFT_WEIGHTS).is_file():
        basis = _weights(folder, STFT_WEIGHTS).get("mel_basis")
    mel = MelFrontEnd(config.sample_rate, config.n_fft, config.hop_length, config.n_mels,
                      basis=basis.numpy() if basis is not None else None)
    model = TangoModel(tokenizer=tokenizer, text_encoder=text, vae=vae, vocoder=vocoder, unet=unet, mel=mel,
                       scheduler_config=dict(SD21_SCHEDULER), source=str(source))
    return model.eval_all()


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, part: str) -> None:
    if not state:
        raise ConfigError(f"{path} holds no weights for the {part}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"{path}: the {part} weights do not fit its config: {str(err).splitlines()[0]} "
                          f"{str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else ''}") from None


# -- writing the layout (a tiny checkpoint for tests; exporting a fine-tuned model) ------------


def vae_ldm_config(vae) -> dict[str, Any]:
    cfg = vae.config
    ch = int(cfg.block_out_channels[0])
    dd: dict[str, Any] = {
        "double_z": True, "z_channels": int(cfg.latent_channels), "resolution": 256, "downsample_time": False,
        "in_channels": int(cfg.in_channels), "out_ch": int(cfg.out_channels), "ch": ch,
        "ch_mult": [int(c) // ch for c in cfg.block_out_channels], "num_res_blocks": int(cfg.layers_per_block),
        "attn_resolutions": [], "dropout": 0.0,
    }
    if int(cfg.norm_num_groups) != LDM_NORM_GROUPS:
        dd["norm_num_groups"] = int(cfg.norm_num_groups)
    return {"image_key": "fbank", "subband": 1, "embed_dim": int(cfg.latent_channels), "time_shuffle": 1,
            "ddconfig": dd, "scale_factor": float(cfg.scaling_factor)}


def vae_to_ldm(state: dict[str, torch.Tensor], n_levels: int) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL keys -> the original LDM / AudioLDM keys (inverse of diffusers' converter)."""
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", new)
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
                     lambda m: f"decoder.up.{n_levels - 1 - int(m[1])}.block.{m[2]}.", new)
        new = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.up.{n_levels - 1 - int(m[1])}.upsample.", new)
        new = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m[1]) + 1}.", new)
        new = new.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        if ".mid_block.attentions.0." in new:
            head, tail = new.split(".mid_block.attentions.0.")
            layer, _, param = tail.rpartition(".")
            new = f"{head}.mid.attn_1.{attn[layer]}.{param}"
            if value.ndim == 2:  # LDM's attention uses 1x1 convolutions
                value = value[:, :, None, None]
        out[new] = value
    return out


def save_tango_layout(model: TangoModel, folder: str | Path, text_encoder_name: str | None = None) -> Path:
    """Write `model` in the declare-lab/tango layout (the tokenizer + T5 config go to `text_encoder/`
    unless `text_encoder_name` names one, e.g. google/flan-t5-large)."""
    folder = Path(folder)
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    if text_encoder_name is None:
        model.tokenizer.save_pretrained(folder / "text_encoder")
        model.text_encoder.config.save_pretrained(folder / "text_encoder")
        text_encoder_name = "text_encoder"
    main = {"text_encoder_name": text_encoder_name, "scheduler_name": "stabilityai/stable-diffusion-2-1",
            "unet_model_name": None, "unet_model_config_path": "configs/diffusion_model_config.json",
            "snr_gamma": 5.0}
    (folder / MAIN_CONFIG).write_text(json.dumps(main))
    unet_config = {k: v for k, v in dict(model.unet.config).items() if not k.startswith("_")}
    unet_config["_class_name"] = "UNet2DConditionModel"
    (folder / "configs" / "diffusion_model_config.json").write_text(json.dumps(unet_config, indent=2))
    (folder / VAE_CONFIG).write_text(json.dumps(vae_ldm_config(model.vae)))
    mel = model.mel
    (folder / STFT_CONFIG).write_text(json.dumps({
        "filter_length": mel.n_fft, "hop_length": mel.hop_length, "win_length": mel.n_fft,
        "n_mel_channels": mel.n_mels, "sampling_rate": mel.sample_rate, "mel_fmin": 0,
        "mel_fmax": mel.sample_rate // 2}))
    main_state = {f"unet.{k}": v for k, v in model.unet.state_dict().items()}
    main_state.update({f"text_encoder.{k}": v for k, v in model.text_encoder.state_dict().items()})
    torch.save(main_state, folder / MAIN_WEIGHTS)
    vae_state = vae_to_ldm(model.vae.state_dict(), len(model.vae.config.block_out_channels))
    vocoder = {k.replace("upsampler.", "ups."): v for k, v in model.vocoder.state_dict().items()
               if k not in ("mean", "scale")}
    vae_state.update({f"vocoder.{k}": v for k, v in vocoder.items()})
    torch.save(vae_state, folder / VAE_WEIGHTS)
    torch.save({"mel_basis": mel.basis.clone()}, folder / STFT_WEIGHTS)
    return folder
