"""Separation stage: mixtures, SI-SNR loss, training, checkpoint/resume, overlap-add, denoising, baseline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from asdflow.config import SeparationConfig, load_config
from asdflow.data.dcase_reader import build_manifest
from asdflow.data.synth import synthesize_dataset
from asdflow.errors import AsdflowError, DataError
from asdflow.separation.classical import fit_wiener, wiener_from_manifest
from asdflow.separation.denoise import SEPARATION_MANIFEST, overlap_add, separate_dataset
from asdflow.separation.losses import neg_si_snr_loss, si_snr
from asdflow.separation.metrics import si_snr as si_snr_np
from asdflow.separation.metrics import si_snr_improvement
from asdflow.separation.mixtures import fit_length, load_mixture_source, mix_at_snr
from asdflow.separation.model import build_separator, load_separator
from asdflow.separation.train import CHECKPOINTS, latest_checkpoint, train_separator, train_steps

SR = 16000


@pytest.fixture(scope="module")
def tiny_config():
    return load_config(profile="tiny")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_config):
    root = tmp_path_factory.mktemp("sep") / "data"
    synthesize_dataset(tiny_config.synth, root, progress=False)
    return build_manifest(root, progress=False)


@pytest.fixture(scope="module")
def sep_config(tiny_config) -> SeparationConfig:
    return tiny_config.separation.model_copy(update={"steps": 4, "checkpoint_every": 2, "segment_seconds": 0.25})


def _tone(seconds: float = 1.0, f0: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)).astype(np.float32) * 0.2


# --- mixtures -------------------------------------------------------------------------

@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5])
def test_mixture_has_the_requested_snr(snr):
    rng = np.random.default_rng(0)
    clean, noise = _tone(), rng.standard_normal(SR).astype(np.float32) * 0.3
    mixture, machine, background = mix_at_snr(clean, noise, snr, gain=0.5)
    measured = 10 * np.log10(np.mean(machine.astype(np.float64) ** 2) / np.mean(background.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=1e-3)
    np.testing.assert_allclose(mixture, machine + background, atol=1e-7)
    np.testing.assert_allclose(machine, clean * 0.5, atol=1e-7)


def test_batches_are_deterministic_and_within_the_snr_range(dataset, sep_config):
    source = load_mixture_source(dataset, sep_config)
    assert source.machine_types == ["fan", "pump"]
    mix_a, ref_a = source.batch(3, batch_size=6)
    mix_b, ref_b = load_mixture_source(dataset, sep_config).batch(3, batch_size=6)
    np.testing.assert_array_equal(mix_a, mix_b)
    np.testing.assert_array_equal(ref_a, ref_b)
    assert mix_a.shape == (6, int(sep_config.segment_seconds * SR)) and ref_a.shape == (6, 2, mix_a.shape[1])
    assert not np.array_equal(source.batch(4, batch_size=6)[0], mix_a)  # another step, other mixtures
    np.testing.assert_allclose(mix_a, ref_a.sum(axis=1), atol=1e-6)
    snrs = 10 * np.log10((ref_a[:, 0] ** 2).mean(axis=1) / (ref_a[:, 1] ** 2).mean(axis=1))
    low, high = sep_config.snr_db
    assert np.all(snrs >= low - 1e-3) and np.all(snrs <= high + 1e-3)


def test_short_clips_are_tiled_to_a_segment():
    short = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(short, 12), np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1], dtype=np.float32))
    assert len(fit_length(np.zeros(0, dtype=np.float32), 4)) == 4


@pytest.mark.parametrize("missing", ["noise", "clean"])
def test_missing_supplemental_kind_is_a_data_error(tmp_path, dataset, sep_config, missing):
    root = tmp_path / "data"
    shutil.copytree(dataset.root, root)
    for wav in (root / "pump" / "supplemental").glob(f"*_supplemental_{missing}_*.wav"):
        wav.unlink()
    manifest = build_manifest(root, progress=False)
    with pytest.raises(DataError, match=rf"'pump'.*no {missing} clips in .*pump/supplemental"):
        load_mixture_source(manifest, sep_config)
    assert load_mixture_source(manifest, sep_config, machine_types=["fan"]).machine_types == ["fan"]


# --- loss and metrics ------------------------------------------------------------------

def test_si_snr_values_on_known_signals():
    ref = torch.from_numpy(_tone()).unsqueeze(0)
    assert float(si_snr(ref, ref)) > 80  # identical: as high as eps allows
    assert float(si_snr(3.0 * ref, ref)) > 80  # a scaled copy is a perfect estimate too
    assert float(si_snr(ref + 5.0, ref)) > 80  # zero-mean: an offset does not count
    noisy = ref + 0.1 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))
    expected = 10 * np.log10((ref**2).sum() / ((noisy - ref) ** 2).sum())
    assert float(si_snr(noisy, ref)) == pytest.approx(float(expected), abs=0.1)
    assert float(si_snr(0.3 * noisy, ref)) == pytest.approx(float(si_snr(noisy, ref)), abs=1e-3)  # scale-invariant
    assert si_snr_np(noisy[0].numpy(), ref[0].numpy()) == pytest.approx(float(si_snr(noisy, ref)), abs=1e-3)


def test_silent_references_never_give_nan():
    silent = torch.zeros(2, 2, 800)
    estimate = torch.randn(2, 2, 800, requires_grad=True)
    loss = neg_si_snr_loss(estimate, silent)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(estimate.grad).all()
    assert torch.isfinite(neg_si_snr_loss(torch.zeros(1, 2, 800), silent))
    # and through the model: a batch whose machine reference is silent
    mix, machine, noise = mix_at_snr(np.zeros(SR // 4, np.float32), np.random.default_rng(0).standard_normal(SR // 4).astype(np.float32), 0.0)
    model = build_separator(SeparationConfig(N=8, L=16, B=4, H=8, P=3, X=1, R=1))
    out = model(torch.from_numpy(mix)[None, None])
    assert torch.isfinite(neg_si_snr_loss(out, torch.from_numpy(np.stack([machine, noise]))[None]))


def test_si_snr_improvement_of_the_mixture_itself_is_zero():
    mix = _tone() + 0.1
    assert si_snr_improvement(mix, mix, _tone()) == pytest.approx(0.0)


# --- training ----------------------------------------------------------------------------

def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(dataset, sep_config):
    source = load_mixture_source(dataset, sep_config)

    class FixedBatch:  # the same mixtures at every step
        def batch(self, step):
            return source.batch(1)

    torch.manual_seed(0)
    model = build_separator(sep_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses = train_steps(model, optimizer, scaler, FixedBatch(), 0, 12, torch.device("cpu"), progress=False)
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 1.0, losses


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, dataset, sep_config):
    straight = train_separator(dataset, sep_config, tmp_path / "straight", progress=False)
    assert sorted(p.name for p in (tmp_path / "straight" / CHECKPOINTS).glob("*.pt")) == ["step_000002.pt", "step_000004.pt"]
    # "killed" after 2 steps: a run that stopped at its step-2 checkpoint, then resumed to 4
    half = sep_config.model_copy(update={"steps": 2})
    first = train_separator(dataset, half, tmp_path / "resumed", progress=False)
    assert first.resumed_from is None and len(first.losses) == 2
    resumed = train_separator(dataset, sep_config, tmp_path / "resumed", progress=False)
    assert resumed.resumed_from == 2 and len(resumed.losses) == 2
    assert resumed.losses == straight.losses[2:]
    a, _ = load_separator(straight.separator_dir)
    b, info = load_separator(resumed.separator_dir)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert resumed.version == straight.version == info["version"]
    assert latest_checkpoint(tmp_path / "resumed").name == "step_000004.pt"


# --- denoising ---------------------------------------------------------------------------

@pytest.mark.parametrize("n, chunk, overlap", [(16000, 4000, 0.5), (10007, 3000, 0.5), (999, 4000, 0.5), (5000, 1000, 0.25), (4000, 1000, 0.0)])
def test_overlap_add_reconstructs_through_identity(n, chunk, overlap):
    wav = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    calls = []

    def identity(frames):
        calls.append(frames.shape)
        return frames

    np.testing.assert_allclose(overlap_add(wav, identity, chunk, overlap), wav, atol=1e-6)
    assert calls[0][1] == min(chunk, n)
    if n > chunk:
        assert calls[0][0] >= 2


def test_overlap_add_cross_fades_between_chunks():
    # a process that adds a different constant per chunk: the output moves smoothly between them
    wav = np.zeros(8000, np.float32)
    out = overlap_add(wav, lambda f: f + np.arange(len(f))[:, None], 2000, 0.5)
    assert np.abs(np.diff(out)).max() < 0.01


def test_separate_dataset_keeps_names_and_layout(tmp_path, dataset, sep_config):
    trained = train_separator(dataset, sep_config.model_copy(update={"steps": 2}), tmp_path / "sep", progress=False)
    run = separate_dataset(trained.separator_dir, dataset, tmp_path / "out", chunk_seconds=0.3, progress=False)
    originals = sorted(str(Path(r.path).relative_to(dataset.root)) for r in dataset.records if r.split in ("train", "test"))
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in run.written) == originals
    assert not run.problems
    info = json.loads((tmp_path / "out" / SEPARATION_MANIFEST).read_text())
    assert info["separator_version"] == trained.version and len(info["files"]) == len(originals)
    assert {f["source"] for f in info["files"]} == set(originals)
    again = build_manifest(tmp_path / "out", progress=False)  # reads back as a DCASE dataset
    by_name = {r.name: r for r in dataset.records}
    assert len(again.records) == len(originals) and not again.problems
    for record in again.records:
        source = by_name[record.name]
        assert (record.split, record.domain, record.label, record.attributes) == (source.split, source.domain, source.label, source.attributes)
        assert record.duration == pytest.approx(source.duration)


def test_separate_dataset_lists_unreadable_clips_and_keeps_the_rest(tmp_path, dataset, sep_config):
    root = tmp_path / "data"
    shutil.copytree(dataset.root, root)
    manifest = build_manifest(root, read_headers=False, progress=False)
    broken = next(r for r in manifest.records if r.split == "test")
    Path(broken.path).write_bytes(b"not audio")
    trained = train_separator(dataset, sep_config.model_copy(update={"steps": 1}), tmp_path / "sep", progress=False)
    run = separate_dataset(trained.separator_dir, manifest, tmp_path / "out", progress=False)
    assert [p.path for p in run.problems] == [broken.path]
    assert len(run.written) == len([r for r in manifest.records if r.split in ("train", "test")]) - 1
    with pytest.raises(DataError, match="must differ"):
        separate_dataset(trained.separator_dir, manifest, root, progress=False)


# --- classical baseline ------------------------------------------------------------------

def test_wiener_baseline_improves_si_snr_on_machine_plus_white_noise():
    rng = np.random.default_rng(0)
    clean = _tone(2.0)
    noise_clips = [rng.standard_normal(SR).astype(np.float32) * 0.1 for _ in range(3)]
    denoiser = fit_wiener(noise_clips)
    noise = rng.standard_normal(len(clean)).astype(np.float32)
    for snr in (-5.0, 0.0, 5.0):
        mixture, machine, _ = mix_at_snr(clean, noise, snr)
        # the PSD is measured at 0.1 std; scale the mixture's noise to the same level
        scale = 0.1 / np.std(mixture - machine)
        improvement = si_snr_improvement(denoiser(mixture * scale), mixture * scale, machine * scale)
        assert improvement > 5.0, (snr, improvement)


def test_wiener_from_manifest_uses_the_machine_types_noise(dataset):
    denoiser = wiener_from_manifest(dataset, "fan")
    assert denoiser.noise_psd.shape == (257,) and np.all(np.isfinite(denoiser.noise_psd))
    with pytest.raises(DataError, match="'valve'"):
        wiener_from_manifest(dataset, "valve")


# --- command line ------------------------------------------------------------------------

def test_cli_commands_train_resume_and_separate(tmp_path, dataset):
    import typer
    from typer.testing import CliRunner

    from asdflow.cli_separate import separate, separate_train

    app = typer.Typer()
    sub = typer.Typer()
    sub.command("train")(separate_train)
    app.add_typer(sub, name="separation")
    app.command("separate")(separate)
    runner = CliRunner()
    result = runner.invoke(app, ["separation", "train", str(dataset.root), str(tmp_path / "sep"), "-p", "tiny", "--steps", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "steps 2" in result.output
    result = runner.invoke(app, ["separation", "train", str(dataset.root), str(tmp_path / "sep"), "-p", "tiny", "--steps", "3", "-q"])
    assert result.exit_code == 0 and "resumed from step 2" in result.output, result.output
    result = runner.invoke(app, ["separate", str(dataset.root), str(tmp_path / "sep" / "separator"), str(tmp_path / "out"),
                                 "-m", "fan", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / SEPARATION_MANIFEST).is_file() and not (tmp_path / "out" / "pump").exists()
    result = runner.invoke(app, ["separate", str(dataset.root), str(tmp_path / "nothing"), str(tmp_path / "out2"), "-q"])
    assert result.exit_code != 0 and isinstance(result.exception, AsdflowError)


def test_progress_bar_shows_the_running_loss_and_old_checkpoints_are_pruned(tmp_path, dataset, sep_config, capsys):
    config = sep_config.model_copy(update={"steps": 3, "checkpoint_every": 1})
    train_separator(dataset, config, tmp_path / "sep", progress=True)
    assert "loss=" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "sep" / CHECKPOINTS).glob("*.pt")) == ["step_000002.pt", "step_000003.pt"]


def test_config_defaults_are_the_papers_and_ranges_are_checked():
    from pydantic import ValidationError

    default = SeparationConfig()
    assert (default.N, default.L, default.B, default.H, default.P, default.X, default.R) == (512, 16, 128, 512, 3, 8, 3)
    assert default.enabled is False and default.use == "original"
    with pytest.raises(ValidationError, match="low end comes first"):
        SeparationConfig(snr_db=(5.0, -5.0))


# --- bad input ---------------------------------------------------------------------------------


def test_a_missing_supplemental_folder_names_both_kinds(tmp_path, dataset, sep_config):
    root = tmp_path / "data"
    shutil.copytree(dataset.root, root)
    shutil.rmtree(root / "fan" / "supplemental")
    manifest = build_manifest(root, progress=False)
    with pytest.raises(DataError, match=r"'fan'.*no clean and no noise clips in .*fan/supplemental"):
        train_separator(manifest, sep_config, tmp_path / "sep", progress=False)
    assert not (tmp_path / "sep").exists()  # nothing half-written


def test_short_silent_and_unreadable_supplemental_clips_train_with_finite_losses(tmp_path, sep_config):
    from asdflow.data.audio import write_audio

    folder = tmp_path / "data" / "fan" / "supplemental"
    rng = np.random.default_rng(0)
    # shorter than a segment (tiled), digital silence (no SNR defined: noise left unscaled), and a broken file
    write_audio(folder / "section_00_source_supplemental_clean_0000.wav", _tone(0.05), SR)
    write_audio(folder / "section_00_source_supplemental_clean_0001.wav", np.zeros(SR // 2, np.float32), SR)
    write_audio(folder / "section_00_source_supplemental_noise_0000.wav",
                rng.standard_normal(SR // 20).astype(np.float32) * 0.1, SR)
    write_audio(folder / "section_00_source_supplemental_noise_0001.wav", np.zeros(SR // 2, np.float32), SR)
    (folder / "section_00_source_supplemental_noise_0002.wav").write_bytes(b"RIFF broken")
    manifest = build_manifest(tmp_path / "data", read_headers=False, progress=False)
    config = sep_config.model_copy(update={"steps": 6, "batch_size": 4, "checkpoint_every": 6})
    result = train_separator(manifest, config, tmp_path / "sep", progress=False)
    assert len(result.losses) == 6 and all(np.isfinite(result.losses))
    assert [Path(p.path).name for p in result.skipped] == ["section_00_source_supplemental_noise_0002.wav"]
    model, _ = load_separator(result.separator_dir)
    for p in model.parameters():
        assert torch.isfinite(p).all()
