import json

import numpy as np
from typer.testing import CliRunner

from asdflow.cli import app
from asdflow.errors import ConfigError
from asdflow.simulation.plots import plot_simulated


def test_plot_simulated_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    normal = rng.normal(-40, 5, (32, 16)).astype(np.float32)
    mask = np.zeros((32, 16), dtype=bool)
    mask[4:10, 2:8] = True
    path = plot_simulated(normal, normal + 6 * mask, mask, tmp_path / "p" / "x.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_simulate_command_writes_samples_and_plots(tiny_dataset, tmp_path):
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, ["simulate", "--data", str(tiny_dataset), "--machine-type", "fan",
                                      "--out", str(out), "--n", "2", "--plot", "--profile", "tiny", "--quiet"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert [s["id"] for s in meta["samples"]] == ["0000", "0001"]
    assert meta["latent_radii"][0] < meta["latent_radii"][1]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["0000.png", "0001.png"]
    assert "wrote 2 plots" in result.output


def test_simulate_command_rejects_an_unknown_method(tiny_dataset, tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--data", str(tiny_dataset), "--machine-type", "fan",
                                      "--out", str(tmp_path / "s"), "--method", "nope", "--profile", "tiny", "-q"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)  # asdflow.cli.main prints it as one line
    assert "unknown simulation method 'nope': available" in str(result.exception)
