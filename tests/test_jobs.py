import pandas as pd
import pytest

from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.errors import DataError
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


def test_machine_manifest_names_what_is_missing():
    manifest = Manifest(root="/x", records=_records("fan"))
    with pytest.raises(DataError, match="valve.*machine types: fan"):
        machine_manifest(manifest, "valve", "test")
    with pytest.raises(DataError, match="no train clips"):
        machine_manifest(manifest, "fan", "train")
