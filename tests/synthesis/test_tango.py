"""Tango: the model, the real-layout loader, fine-tuning with exact resume, generation, quality, registry, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

MACHINE = "fan"  # the machine type of the conftest data


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the model and its loader -------------------------------------------------------------


def test_mel_front_end_matches_tango_settings():
    from asdflow.synthesis.mel import LOG_FLOOR, MelFrontEnd

    front = MelFrontEnd()  # 16 kHz, n_fft 1024, hop 160, 64 mels
    assert front.n_frames(10.0, 32) == 1024  # Tango's 10 s -> 1024 frames -> 256 x 16 latents
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(16000) / 16000)[None]
    mel = front(tone, front.n_frames(1.0, 8))
    assert mel.shape == (1, 1, 104, 64)
    peak_band = int(mel[0, 0, 10:90].mean(0).argmax())
    centres = __import__("librosa").mel_frequencies(66, fmin=0, fmax=8000)[1:-1]
    assert abs(centres[peak_band] - 1000) < 150  # the 1 kHz tone lands in the band around 1 kHz
    assert torch.allclose(mel[0, 0, 101:], torch.full((3, 64), float(np.log(LOG_FLOOR))))  # padding = silence


def test_tiny_checkpoint_in_the_tango_layout_loads_through_the_real_loader(tmp_path):
    from asdflow.synthesis.model import build_tiny_tango
    from asdflow.synthesis.pretrained import load_pretrained_tango, save_tango_layout

    model = build_tiny_tango(seed=3)
    folder = save_tango_layout(model, tmp_path / "tango")
    for name in ("main_config.json", "vae_config.json", "stft_config.json", "pytorch_model_main.bin",
                 "pytorch_model_vae.bin", "pytorch_model_stft.bin"):
        assert (folder / name).is_file(), name
    vae_keys = torch.load(folder / "pytorch_model_vae.bin", weights_only=True).keys()
    # the original AudioLDM naming, HiFi-GAN inside the VAE file, as declare-lab/tango ships it
    assert "encoder.down.0.block.0.conv1.weight" in vae_keys and "decoder.mid.attn_1.q.weight" in vae_keys
    assert "vocoder.ups.0.weight" in vae_keys and "vocoder.conv_pre.weight" in vae_keys

    loaded = load_pretrained_tango(folder)
    for part in ("text_encoder", "vae", "vocoder", "unet"):
        assert _same(_state(getattr(model, part)), _state(getattr(loaded, part))), part
    n_frames = model.mel.n_frames(0.5, model.frame_multiple)
    a = model.sample(["a fan"], n_frames, 2, 2.0, [torch.Generator().manual_seed(0)])
    b = loaded.sample(["a fan"], n_frames, 2, 2.0, [torch.Generator().manual_seed(0)])
    assert a.shape[0] == 1 and a.shape[1] >= n_frames * 160 and torch.equal(a, b)  # HiFi-GAN adds a few samples


def test_loader_names_what_is_missing(tmp_path):
    from asdflow.errors import ConfigError
    from asdflow.synthesis.pretrained import load_pretrained_tango

    (tmp_path / "main_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="vae_config.json is missing"):
        load_pretrained_tango(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrained_tango(tmp_path / "nowhere")


# -- fine-tuning ------------------------------------------------------------------------------


def test_finetuning_applies_the_reports_recipe(finetuned, synth_config):
    from peft import LoraConfig

    from asdflow.synthesis.finetune import load_finetuned_tango
    from asdflow.synthesis.model import build_tiny_tango

    model_dir = Path(finetuned.model_dir)
    for name in ("text_encoder_lora", "vae_lora"):
        lora = LoraConfig.from_pretrained(str(model_dir / name))
        assert (lora.r, lora.lora_alpha) == (32, 8)
    assert finetuned.steps == synth_config.synthesis.steps and len(finetuned.losses) == finetuned.steps
    assert all(np.isfinite(finetuned.losses)) and all(v > 0 for v in finetuned.vae_losses)

    base, tuned = build_tiny_tango(synth_config.synthesis.seed), load_finetuned_tango(model_dir)
    assert tuned.version == finetuned.version
    # the UNet is fully fine-tuned: every conv/linear weight moved
    base_unet, tuned_unet = _state(base.unet), _state(tuned.unet)
    moved = [k for k in base_unet if k.endswith("weight") and not torch.equal(base_unet[k], tuned_unet[k])]
    assert len(moved) == sum(k.endswith("weight") for k in base_unet)
    # LoRA B matrices start at zero: non-zero ones were trained (text by the diffusion loss, VAE by its own)
    for part in (tuned.text_encoder, tuned.vae):
        b = [v for k, v in part.state_dict().items() if "lora_B" in k]
        assert b and any(v.abs().sum() > 0 for v in b)
    # the frozen parts are untouched
    assert _same(_state(base.vocoder), _state(tuned.vocoder))
    text_base = {k: v for k, v in _state(tuned.text_encoder).items() if "lora_" not in k}
    assert _same({k.replace("base_layer.", ""): v for k, v in text_base.items()}, _state(base.text_encoder))


def test_an_interrupted_run_resumes_to_the_same_model(tmp_path, fan_manifest, synth_config, prompt_table, finetuned):
    from asdflow.synthesis.finetune import finetune_tango

    class Killed(Exception):
        pass

    def kill_at_3(step, loss):
        if step == 3:  # after the step-2 checkpoint, before the next: step 3 is lost and redone
            raise Killed

    with pytest.raises(Killed):
        finetune_tango(fan_manifest, MACHINE, synth_config, tmp_path, prompt_table, on_step=kill_at_3)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000002.pt"]
    resumed = finetune_tango(fan_manifest, MACHINE, synth_config, tmp_path, prompt_table)
    assert resumed.resumed_from == 2
    assert resumed.losses == finetuned.losses[2:]
    assert resumed.version == finetuned.version  # a hash of every trained weight: bit-identical


def test_finetuning_without_prompts_for_the_clips_says_so(tmp_path, fan_manifest, synth_config):
    from asdflow.errors import DataError
    from asdflow.synthesis.finetune import finetune_tango

    table = pd.DataFrame({"clip": ["other.wav"], "strategy": ["template"], "text": ["x"]})
    with pytest.raises(DataError, match="no 'template' prompt"):
        finetune_tango(fan_manifest, MACHINE, synth_config, tmp_path, table)


# -- generation and quality ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory, finetuned, fan_manifest, synth_config, prompt_table):
    from asdflow.synthesis.generate import generate_normals

    out = tmp_path_factory.mktemp("tango_generated")
    return generate_normals(finetuned.model_dir, fan_manifest, MACHINE, synth_config, out, prompt_table)


def test_generated_clips_are_dcase_normal_training_clips_marked_synthetic(generated, synth_config, finetuned):
    from asdflow.data.audio import read_audio_info
    from asdflow.jobs import load_dataset

    synth = synth_config.synthesis
    assert generated.per_strategy == {s: synth.clips_per_strategy for s in synth.strategies}
    manifest = load_dataset(generated.out_root, progress=False)  # reads the manifest.csv it wrote
    assert len(manifest) == len(generated.clips) == len(synth.strategies) * synth.clips_per_strategy
    for record in manifest.records:
        assert record.synthetic and record.split == "train" and record.label == "normal"
        assert record.machine_type == MACHINE and record.naming == "dcase2021+"
        assert record.attributes["strategy"] in {s.replace("_", "-") for s in synth.strategies}
        info = read_audio_info(record.path)
        assert info.sample_rate == 16000 and abs(info.duration - synth.duration) < 1e-3
    meta = pd.read_csv(generated.metadata_csv)
    assert list(meta.columns[:5]) == ["clip", "prompt", "strategy", "seed", "model_version"]
    assert set(meta["model_version"]) == {finetuned.version} and meta["seed"].is_unique
    assert sorted(Path(generated.out_root, MACHINE, c).name for c in meta["clip"]) == sorted(r.name for r in manifest.records)
    # the level is matched to the real clips
    assert generated.target_rms is not None


def test_a_clip_is_reproduced_from_its_seed(generated, finetuned, synth_config):
    from asdflow.data.audio import load_audio
    from asdflow.synthesis.finetune import load_finetuned_tango

    row = pd.read_csv(generated.metadata_csv).iloc[3]
    model = load_finetuned_tango(finetuned.model_dir)
    synth = synth_config.synthesis
    wav = model.sample([row["prompt"]], model.mel.n_frames(synth.duration, model.frame_multiple),
                       synth.inference_steps, synth.guidance_scale, [torch.Generator().manual_seed(int(row["seed"]))],
                       synth)[0].numpy()[: int(synth.duration * 16000)]
    wav = wav * generated.target_rms / np.sqrt(np.mean(wav.astype(np.float64) ** 2))
    written = load_audio(Path(generated.out_root, MACHINE, row["clip"]))
    assert np.max(np.abs(written - np.clip(wav, -1, 1))) < 2 / 32768  # PCM16 rounding


def test_frechet_distance():
    from asdflow.synthesis.quality import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    b = rng.normal(size=(4000, 3)) * 2 + np.array([1.0, 0, 0])
    # N(0, I) vs N(m, 4I): |m|^2 + 3 * (1 + 4 - 2 * 2) = 1 + 3
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a[:3], a[3:6]) >= 0  # singular covariances: regularised, finite


def test_quality_report_finds_duplicates_and_logs_to_mlflow(tmp_path, generated, fan_manifest, synth_config, clap):
    import mlflow

    from asdflow.synthesis.generate import synthetic_manifest
    from asdflow.synthesis.quality import quality_report

    root = tmp_path / "gen"
    shutil.copytree(generated.out_root, root)
    meta_path = root / MACHINE / "metadata.csv"
    meta = pd.read_csv(meta_path)
    first = root / MACHINE / meta["clip"][0]
    # one exact copy, one near copy (a faint noise floor added), both listed as generated clips
    copy, near = first.with_name(first.name.replace("_0000_", "_0900_")), first.with_name(first.name.replace("_0000_", "_0901_"))
    shutil.copy(first, copy)
    from asdflow.data.audio import load_audio, write_audio

    wav = load_audio(first)
    write_audio(near, wav + np.random.default_rng(0).normal(0, 1e-3, wav.shape).astype(np.float32), 16000)
    extra = meta.iloc[[0, 0]].assign(clip=[f"train/{copy.name}", f"train/{near.name}"])
    pd.concat([meta, extra]).to_csv(meta_path, index=False)
    synthetic_manifest(root).save(root)

    config = synth_config.model_copy(update={"synthesis": synth_config.synthesis.model_copy(
        update={"near_duplicate_cosine": 0.999})})
    report = quality_report(root, fan_manifest, MACHINE, config, out_dir=tmp_path / "q")  # log-mel embedding
    assert report.embedding == "logmel_stats" and report.n_clips == len(meta) + 2
    assert [sorted(g) for g in report.exact_duplicate_groups] == [sorted([first.name, copy.name])]
    near_pairs = {frozenset(p[:2]) for p in report.near_duplicate_pairs}
    assert frozenset([first.name, near.name]) in near_pairs and frozenset([copy.name, near.name]) in near_pairs
    assert report.clipping_ratio_max == 0 and -60 < report.level_dbfs_mean < 0
    assert report.frechet_distance is not None and report.frechet_distance > 0
    assert set(report.frechet_by_strategy) == set(synth_config.synthesis.strategies)

    clap_report = quality_report(root, fan_manifest, MACHINE, config, scorers=[clap], log_to_mlflow=False,
                                 out_dir=tmp_path / "q_clap")
    assert clap_report.embedding.startswith("clap:") and np.isfinite(clap_report.clap_similarity_mean)
    per_clip = pd.read_csv(clap_report.per_clip_csv, keep_default_na=False)  # each clip scored against its own prompt
    expected = clap.similarity([load_audio(root / MACHINE / "train" / c) for c in per_clip["clip"]], 16000,
                               list(per_clip["prompt"]))
    np.testing.assert_allclose(per_clip["clap_similarity"].to_numpy(float), expected, rtol=1e-4, atol=1e-5)
    assert set(clap_report.clap_similarity_by_strategy) == set(synth_config.synthesis.strategies)

    run = mlflow.MlflowClient(tracking_uri=synth_config.tracking.tracking_uri).get_run(report.mlflow_run_id)
    assert run.data.metrics["synth_frechet_distance"] == pytest.approx(report.frechet_distance)
    assert run.data.metrics["synth_n_exact_duplicates"] == 1
    assert run.data.tags["machine_type"] == MACHINE
    saved = json.loads((tmp_path / "q" / f"quality_{MACHINE}.json").read_text())
    assert saved["mlflow_run_id"] == report.mlflow_run_id


# -- registry and CLI -----------------------------------------------------------------------------


def test_register_tango_with_alias_and_load_it_back(finetuned, synth_config):
    import mlflow

    from asdflow.registry.tango import register_tango

    registered = register_tango(finetuned.model_dir, MACHINE, synth_config, {"final_loss": finetuned.final_loss})
    assert registered.name == f"tango-{MACHINE}" and registered.alias == "challenger"
    client = mlflow.MlflowClient(tracking_uri=synth_config.tracking.tracking_uri)
    version = client.get_model_version_by_alias(registered.name, "challenger")
    assert str(version.version) == registered.version and version.tags["tango_version"] == finetuned.version
    model = mlflow.pyfunc.load_model(f"models:/{registered.name}@challenger")
    out = model.predict(pd.DataFrame({"prompt": ["The normal condition machine sound of fan."], "seed": [1]}))
    assert len(out["waveform"][0]) == int(synth_config.synthesis.duration * 16000)


def test_cli_finetune_then_generate(tmp_path, fan_data, synth_config):
    from typer.testing import CliRunner

    from asdflow.cli import app

    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"synthesis": {"steps": 2, "strategies": ["template"], "clips_per_strategy": 1},
                                  "tracking": synth_config.tracking.model_dump()}))
    runner = CliRunner()
    done = runner.invoke(app, ["synthesis", "finetune", str(fan_data), str(tmp_path / "models"), "-m", MACHINE,
                               "-p", "tiny", "-c", str(config), "--no-register", "-q"])
    assert done.exit_code == 0, done.output
    assert "Tango fine-tuned" in done.output and (tmp_path / "models" / MACHINE / "model" / "tango.json").is_file()
    done = runner.invoke(app, ["synthesis", "generate", str(tmp_path / "models"), str(fan_data), str(tmp_path / "gen"),
                               "-m", MACHINE, "-p", "tiny", "-c", str(config), "-q"])
    assert done.exit_code == 0, done.output
    assert "1 synthetic normal clips" in done.output and "quality:" in done.output
