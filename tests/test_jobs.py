import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.errors import DataError, EvaluationError
from asdflow.jobs import evaluate_clips, machine_manifest


def _records(machine: str) -> list[ClipRecord]:
    rows = []
    for domain in ("source", "target"):
        for label in ("normal", "anomaly"):
            for i in range(3):
                name = f"section_00_{domain}_test_{label}_{i:04d}.wav"  # the same names in every machine type
                rows.append(ClipRecord(path=f"/x/{machine}/test/{name}", name=name, machine_type=machine,
                                       section="00", domain=domain, split="test", label=label))
    return rows


def test_evaluate_keeps_machine_types_apart_when_names_repeat(tmp_path):
    manifest = Manifest(root="/x", records=_records("fan") + _records("pump"))
    frame = manifest.to_frame()[["name", "machine_type", "section", "domain", "label"]]
    # fan: anomalies score higher (perfect); pump: the reverse (worst): mixing them up would show
    frame["score"] = [
        (1.0 if label == "anomaly" else 0.0) if machine == "fan" else (0.0 if label == "anomaly" else 1.0)
        for machine, label in zip(frame["machine_type"], frame["label"])
    ]
    report = evaluate_clips(frame, manifest, tmp_path)
    assert report.machine_types["fan"].auc_source == pytest.approx(1.0)
    assert report.machine_types["pump"].auc_source == pytest.approx(0.0)
    assert (tmp_path / "roc.png").stat().st_size > 0


def test_unlabelled_eval_clips_are_scored_counted_and_left_out_of_the_score(tmp_path):
    eval_clips = [ClipRecord(path=f"/x/fan/test/{name}", name=name, machine_type="fan", section="00", domain=domain,
                             split="test", naming="eval")
                  for name, domain in [("section_00_source_test_0000.wav", "source"), ("section_00_0001.wav", None)]]
    manifest = Manifest(root="/x", records=_records("fan") + eval_clips)
    frame = manifest.to_frame()[["name", "machine_type", "section", "domain", "label"]]
    frame["score"] = [1.0 if label == "anomaly" else 0.0 for label in frame["label"]]
    report = evaluate_clips(frame, manifest, tmp_path)
    assert report.n_unlabelled == 2 and report.overall.official == pytest.approx(1.0)
    assert json.loads((tmp_path / "evaluation.json").read_text())["n_unlabelled"] == 2
    # a scored clip the manifest does not know is still an error, not an unlabelled clip
    stray = pd.concat([frame, frame.iloc[:1].assign(name="section_00_source_test_normal_9999.wav")])
    with pytest.raises(EvaluationError, match="not in the ground truth"):
        evaluate_clips(stray, manifest, tmp_path)


def test_machine_manifest_names_what_is_missing():
    manifest = Manifest(root="/x", records=_records("fan"))
    with pytest.raises(DataError, match="valve.*machine types: fan"):
        machine_manifest(manifest, "valve", "test")
    with pytest.raises(DataError, match="no train clips"):
        machine_manifest(manifest, "fan", "train")


# --- extra training data and separation.use ------------------------------------------------------


def _extra_folder(tiny_dataset: Path, out: Path, synthetic: bool) -> Path:
    """A copy of fan's train clips; with `synthetic`, listed in a manifest.csv that flags them synthetic."""
    from asdflow.data.dcase_reader import build_manifest

    shutil.copytree(tiny_dataset / "fan" / "train", out / "fan" / "train")
    if synthetic:
        manifest = build_manifest(out, progress=False)
        Manifest(root=str(out), records=[r.model_copy(update={"synthetic": True}) for r in manifest.records]).save(out)
    return out


def test_extra_training_clips_keep_the_synthetic_flag_and_refuse_empty_folders(tmp_path, tiny_dataset):
    from asdflow.jobs import extra_training_clips

    synthetic = _extra_folder(tiny_dataset, tmp_path / "synthetic", synthetic=True)
    layout = _extra_folder(tiny_dataset, tmp_path / "layout", synthetic=False)
    n_train = len(list((tiny_dataset / "fan" / "train").glob("*.wav")))
    found = extra_training_clips([synthetic, layout], "fan")
    assert len(found) == 2 * n_train
    assert [r.synthetic for r in found] == [True] * n_train + [False] * n_train
    assert all(r.split == "train" and r.label == "normal" and r.machine_type == "fan" for r in found)
    with pytest.raises(DataError, match=r"extra training data .*layout: no normal train clips of machine type 'pump'"):
        extra_training_clips([layout], "pump")


def test_cli_train_takes_repeated_extra_train_folders(tmp_path, tiny_dataset):
    from typer.testing import CliRunner

    from asdflow.cli import app

    extra_a = _extra_folder(tiny_dataset, tmp_path / "a", synthetic=True)
    extra_b = _extra_folder(tiny_dataset, tmp_path / "b", synthetic=False)
    result = CliRunner().invoke(app, ["train", str(tiny_dataset), "-m", "fan", "--profile", "tiny", "-q",
                                      "--out", str(tmp_path / "det"), "--extra-train", str(extra_a),
                                      "--extra-train", str(extra_b)])
    assert result.exit_code == 0, result.output
    n_train = len(list((tiny_dataset / "fan" / "train").glob("*.wav")))
    assert f"trained on {3 * n_train} clips ({2 * n_train} from --extra-train)" in result.output
    fit = json.loads((tmp_path / "det" / "fan" / "detector.json").read_text())["fit_info"]
    assert fit["n_clips"] == 3 * n_train
    result = CliRunner().invoke(app, ["train", str(tiny_dataset), "-m", "pump", "--profile", "tiny", "-q",
                                      "--out", str(tmp_path / "det"), "--extra-train", str(extra_a)])
    assert isinstance(result.exception, DataError)  # the real entry point prints it as one line
    assert "no normal train clips of machine type 'pump'" in str(result.exception)


def test_train_detector_trains_the_family_it_is_asked_for(tmp_path, tiny_config, tiny_manifest):
    """The pipeline trains one family per step from one config: `family` overrides `detector.family`."""
    from asdflow.detectors import load_detector
    from asdflow.jobs import train_detector

    config = tiny_config.model_copy(update={"detector": tiny_config.detector.model_copy(update={"family": "auddsr"}),
                                            "progress": False})
    result = train_detector(tiny_manifest, "fan", config, tmp_path / "det", family="baseline_ae")
    assert result.family == "baseline_ae" and load_detector(tmp_path / "det").family == "baseline_ae"
