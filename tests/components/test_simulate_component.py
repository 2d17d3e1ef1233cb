"""simulate_anomalies through .python_func: simulated spectrograms, masks, metadata and plots of one machine type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import Dataset

import components
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError


@pytest.fixture(scope="module")
def inputs(tiny_manifest, tiny_dataset, tmp_path_factory):
    directory = tmp_path_factory.mktemp("manifest")
    tiny_manifest.save(directory)
    return Dataset(name="data", uri=str(tiny_dataset)), Dataset(name="manifest", uri=str(directory))


def _settings(**extra):
    from asdflow.pipeline_ops import encode_overrides

    return {"config_profile": "tiny", "config_overrides": encode_overrides({"progress": False, **extra})}


def test_writes_simulated_patches_masks_metadata_and_plots(inputs, tmp_path):
    data, manifest = inputs
    out = Dataset(name="simulated", uri=str(tmp_path / "sim"))
    components.simulate_anomalies.python_func(data=data, manifest=manifest, machine_type="fan", simulated=out,
                                              n=3, **_settings())
    root = Path(out.path)
    meta = json.loads((root / "metadata.json").read_text())
    assert meta["machine_type"] == "fan" and meta["method"] == "latent" and len(meta["samples"]) == 3
    normal, simulated, mask = (np.load(root / sub / "0000.npy") for sub in ("normal", "simulated", "masks"))
    assert normal.shape == simulated.shape == mask.shape == (128, 16) and mask.dtype == bool
    assert np.array_equal(normal[~mask], simulated[~mask]) and not np.array_equal(normal[mask], simulated[mask])
    fan_clips = {r.name for r in Manifest.load(manifest.path).select(machine_type="fan", split="train").records}
    assert all(s["clip"] in fan_clips for s in meta["samples"])
    assert sorted(p.name for p in (root / "plots").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert out.metadata == {"machine_type": "fan", "method": "latent", "n": 3}


def test_same_seed_same_output_other_seed_other_output(inputs, tmp_path):
    data, manifest = inputs
    arrays = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = Dataset(name=name, uri=str(tmp_path / name))
        components.simulate_anomalies.python_func(data=data, manifest=manifest, machine_type="pump", simulated=out,
                                                  n=2, plot=False, **_settings(simulation={"seed": seed}))
        arrays.append(np.load(Path(out.path) / "simulated" / "0001.npy"))
    assert np.array_equal(arrays[0], arrays[1]) and not np.array_equal(arrays[0], arrays[2])


def test_unknown_machine_type_is_a_clear_error(inputs, tmp_path):
    data, manifest = inputs
    with pytest.raises(DataError, match="no normal training clips of 'valve'"):
        components.simulate_anomalies.python_func(data=data, manifest=manifest, machine_type="valve",
                                                  simulated=Dataset(name="s", uri=str(tmp_path / "s")), **_settings())
