"""Separation stages: held-out split, evaluation mixtures vs the Wiener baseline, train+register, denoise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from asdflow.config import SeparationConfig
from asdflow.data.dcase_reader import build_manifest
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError
from asdflow.jobs import load_dataset
from asdflow.registry.models import RegistryError
from asdflow.registry.separators import CURRENT, register_separator, separator_model_name
from asdflow.separation.evaluation import make_eval_mixtures, score_mixtures
from asdflow.separation.stages import STAGE_FILE, denoise_stage, separation_train_stage, split_supplemental

SR = 16000


@pytest.fixture(scope="module")
def store_config(tmp_path_factory, tiny_config):
    store = tmp_path_factory.mktemp("sep_store")
    separation = tiny_config.separation.model_copy(update={"steps": 2, "segment_seconds": 0.25, "eval_mixtures": 2})
    return tiny_config.model_copy(update={
        "separation": separation,
        "tracking": tiny_config.tracking.model_copy(update={
            "tracking_uri": f"sqlite:///{store / 'mlflow.db'}", "artifact_location": str(store / "artifacts")}),
    })


@pytest.fixture(scope="module")
def stage(tmp_path_factory, tiny_manifest, store_config):
    out = tmp_path_factory.mktemp("sep_stage") / "separator"
    return separation_train_stage(tiny_manifest, "fan", store_config, out)


def _tone(seconds: float, f0: float = 180.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t)).astype(np.float32)


# --- held-out split -------------------------------------------------------------------------


def test_split_holds_out_the_last_clips_of_each_kind(tiny_manifest):
    train, held = split_supplemental(tiny_manifest, "fan", 0.2)
    kinds = lambda m: sorted(r.supplemental_kind for r in m.records if r.split == "supplemental" and r.machine_type == "fan")  # noqa: E731
    assert kinds(held) == ["clean", "noise"]  # 2 of each in the tiny profile: one held out per kind
    assert kinds(train) == ["clean", "noise"]
    assert not {r.name for r in held.records} & {r.name for r in train.records if r.machine_type == "fan"}
    assert len(train.select(machine_type="pump").records) == len(tiny_manifest.select(machine_type="pump").records)


def test_split_with_a_single_clip_of_a_kind_holds_nothing_out(tiny_manifest):
    noise = [r.name for r in tiny_manifest.records if r.machine_type == "fan" and r.supplemental_kind == "noise"]
    one_noise = Manifest(root=tiny_manifest.root, records=[
        r for r in tiny_manifest.records
        if not (r.machine_type == "fan" and r.supplemental_kind == "noise" and r.name != noise[0])])
    train, held = split_supplemental(one_noise, "fan", 0.5)
    assert held is None
    assert len(train.records) == len(one_noise.records)  # nothing lost: every clip trains


# --- evaluation mixtures ----------------------------------------------------------------------


def test_eval_mixtures_have_their_snr_and_a_same_level_noise_estimate():
    rng = np.random.default_rng(0)
    noise = [rng.standard_normal(3 * SR).astype(np.float32) * 0.05]
    mixtures = make_eval_mixtures([_tone(2.0)], noise, [-5.0, 5.0], 3, SR // 2, seed=1)
    assert [m.snr_db for m in mixtures] == [-5.0] * 3 + [5.0] * 3
    for m in mixtures:
        background = m.mixture - m.machine
        snr = 10 * np.log10(np.mean(m.machine.astype(np.float64) ** 2) / np.mean(background.astype(np.float64) ** 2))
        assert snr == pytest.approx(m.snr_db, abs=1e-3)
        # white noise: the other stretch, scaled alike, has the same power as the mixed one (within 10 %)
        assert np.mean(m.noise_estimate_clip ** 2) == pytest.approx(np.mean(background ** 2), rel=0.1)
        assert not np.array_equal(m.noise_estimate_clip, background)
    again = make_eval_mixtures([_tone(2.0)], noise, [-5.0, 5.0], 3, SR // 2, seed=1)
    assert all(np.array_equal(a.mixture, b.mixture) for a, b in zip(mixtures, again))


def test_scores_identity_oracle_and_the_wiener_baseline():
    rng = np.random.default_rng(1)
    noise = [rng.standard_normal(4 * SR).astype(np.float32) * 0.05]
    mixtures = make_eval_mixtures([_tone(2.0)], noise, [-5.0, 0.0, 5.0], 2, SR, seed=0)
    identity = score_mixtures(mixtures, lambda x: x)
    assert identity.separator_si_snri_db == pytest.approx(0.0, abs=1e-6)
    assert [r.snr_db for r in identity.by_snr] == [-5.0, 0.0, 5.0] and all(r.n == 2 for r in identity.by_snr)
    assert identity.wiener_si_snri_db > 3.0  # a tone in white noise: the classical filter does help
    by_reference = {id(m.mixture): m.machine for m in mixtures}
    oracle = score_mixtures(mixtures, lambda x: by_reference[id(x)], wiener=False)
    assert oracle.separator_si_snri_db > 20 and oracle.wiener_si_snri_db is None
    metrics = identity.metrics()
    assert set(metrics) >= {"si_snri_db", "wiener_si_snri_db", "si_snri_db.snr_m5", "si_snri_db.snr_0",
                            "si_snri_db.snr_5"}


def test_silent_clips_are_left_out_of_evaluation_mixtures():
    silent, tone = np.zeros(SR, np.float32), _tone(1.0)
    noise = np.random.default_rng(2).standard_normal(SR).astype(np.float32)
    mixtures = make_eval_mixtures([silent, tone], [noise, np.zeros(SR, np.float32)], [0.0], 4, SR // 4)
    assert all(np.isfinite(m.mixture).all() and np.mean(m.machine ** 2) > 0 for m in mixtures)
    with pytest.raises(DataError, match="non-silent clean and noise"):
        make_eval_mixtures([silent], [noise], [0.0], 1, SR // 4)


# --- train stage + MLflow ----------------------------------------------------------------------


def test_train_stage_evaluates_on_held_out_mixtures_and_registers(stage, store_config):
    assert stage.evaluation.held_out and stage.evaluation.n_clean == 1 and stage.evaluation.n_noise == 1
    scores = stage.evaluation.scores
    assert np.isfinite(scores["separator_si_snri_db"]) and np.isfinite(scores["wiener_si_snri_db"])
    assert sorted(p.name for p in Path(stage.separator_dir).iterdir()) == ["separation_stage.json", "separator.json",
                                                                           "separator.pt"]
    assert json.loads((Path(stage.separator_dir) / STAGE_FILE).read_text())["registered_version"] == "1"
    uri = store_config.tracking.tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias(separator_model_name("fan"), CURRENT)
    assert str(version.version) == stage.registered_version == "1"
    assert version.tags["separator_version"] == stage.version
    run = client.get_run(version.run_id)
    assert run.data.metrics["si_snri_db"] == pytest.approx(stage.evaluation.si_snri_db)
    assert {"wiener_si_snri_db", "steps", "final_loss", "si_snri_db.snr_m5"} <= set(run.data.metrics)
    assert run.data.params["separation.N"] == str(store_config.separation.N)
    assert run.data.tags["stage"] == "separation"


def test_registered_separator_loads_as_pyfunc_and_separates(stage, store_config):
    mlflow.set_tracking_uri(store_config.tracking.tracking_uri)
    mlflow.set_registry_uri(store_config.tracking.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{separator_model_name('fan')}@{CURRENT}")
    wav = np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32) * 0.1
    out = model.predict(pd.DataFrame({"waveform": [wav, wav[: SR // 4]], "sample_rate": [SR, SR]}))
    assert [len(x) for x in out["machine"]] == [SR // 2, SR // 4]
    assert all(np.isfinite(np.asarray(x)).all() for x in out["machine"])


def test_register_refuses_a_folder_without_a_separator(tmp_path, store_config):
    with pytest.raises(RegistryError, match="separator.json or separator.pt is missing"):
        register_separator(tmp_path, "fan", store_config, {"si_snri_db": 1.0})


def test_train_stage_without_noise_clips_is_a_data_error(tmp_path, tiny_dataset, store_config):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset / "fan", root / "fan")
    for wav in (root / "fan" / "supplemental").glob("*_supplemental_noise_*.wav"):
        wav.unlink()
    manifest = build_manifest(root, progress=False)
    with pytest.raises(DataError, match=r"'fan'.*no noise clips in .*fan/supplemental"):
        separation_train_stage(manifest, "fan", store_config, tmp_path / "sep", register=False)
    assert not (tmp_path / "sep").exists()


# --- denoise stage -------------------------------------------------------------------------------


def test_denoise_stage_writes_a_dataset_with_its_manifest(tmp_path, stage, tiny_manifest):
    result = denoise_stage(stage.separator_dir, tiny_manifest, "fan", tmp_path / "separated", progress=False)
    fan = [r for r in tiny_manifest.records if r.machine_type == "fan" and r.split in ("train", "test")]
    assert result.n_written == len(fan) and not result.problems
    separated = load_dataset(tmp_path / "separated")  # its manifest.csv, not a re-read of the layout
    assert sorted(r.name for r in separated.records) == sorted(r.name for r in fan)
    by_name = {r.name: r for r in fan}
    for record in separated.records:
        source = by_name[record.name]
        assert Path(record.path).is_relative_to(tmp_path / "separated") and Path(record.path).is_file()
        assert (record.split, record.domain, record.label, record.attributes) == (
            source.split, source.domain, source.label, source.attributes)
        assert record.md5 and record.md5 != source.md5
    assert not (tmp_path / "separated" / "pump").exists()
    with pytest.raises(DataError, match="no train or test clips of machine type 'valve'"):
        denoise_stage(stage.separator_dir, tiny_manifest, "valve", tmp_path / "nothing", progress=False)


def test_config_refuses_bad_evaluation_settings():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SeparationConfig(eval_fraction=1.0)
    with pytest.raises(ValidationError):
        SeparationConfig(eval_snr_db=[])


# --- a dataset without supplemental clips (DCASE 2023, a plant's own) ------------------------------


def test_without_supplemental_clips_separation_is_skipped_with_its_reason_and_denoise_passes_clips_on(
        tmp_path, tiny_dataset, store_config):
    from asdflow.separation.stages import SKIPPED_FILE, skipped_reason

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset / "fan", root / "fan", ignore=shutil.ignore_patterns("supplemental"))
    manifest = build_manifest(root, progress=False)
    result = separation_train_stage(manifest, "fan", store_config, tmp_path / "sep")
    assert result.skipped_reason and "no supplemental clips of fan" in result.skipped_reason
    assert result.registered_version is None and skipped_reason(tmp_path / "sep") == result.skipped_reason
    runs = mlflow.MlflowClient(store_config.tracking.tracking_uri).search_runs(
        [mlflow.get_experiment_by_name(store_config.tracking.experiment).experiment_id],
        filter_string="tags.skipped = 'true'")
    assert any(r.data.tags["skip_reason"] == result.skipped_reason for r in runs)

    denoised = denoise_stage(tmp_path / "sep", manifest, "fan", tmp_path / "separated", progress=False)
    assert denoised.skipped_reason == result.skipped_reason and (tmp_path / "separated" / SKIPPED_FILE).is_file()
    passed = load_dataset(tmp_path / "separated")
    originals = {r.name: r for r in manifest.records}
    assert sorted(r.name for r in passed.records) == sorted(originals)
    assert all(r.md5 == originals[r.name].md5 or originals[r.name].md5 is None for r in passed.records)
    assert all(Path(r.path).is_relative_to(tmp_path / "separated") for r in passed.records)
