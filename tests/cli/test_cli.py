"""The real `asdflow` console script, end to end on a tiny dataset, and its one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ASDFLOW = str(Path(sys.executable).parent / "asdflow")


def run(*args, cwd=None):
    env = {**os.environ, "ASDFLOW_DEBUG": ""}
    return subprocess.run([ASDFLOW, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_train_score_evaluate_on_a_dataset(tmp_path):
    data = tmp_path / "data"
    done = run("data", "synth", str(data), "--profile", "tiny", "-m", "fan", "-q")
    assert done.returncode == 0, done.stderr
    done = run("data", "manifest", str(data), "-q")
    assert done.returncode == 0, done.stderr
    assert "0 problem(s)" in done.stdout and (data / "manifest.csv").exists()
    done = run("train", str(data), "--profile", "tiny", "--out", str(tmp_path / "det"), "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "det" / "fan" / "detector.json").exists()
    done = run("score", str(data), "--detectors", str(tmp_path / "det"), "--out", str(tmp_path / "scores"), "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "scores" / "fan" / "anomaly_score_fan_section_00_test.csv").exists()
    assert (tmp_path / "scores" / "fan" / "decision_result_fan_section_00_test.csv").exists()
    done = run("evaluate", str(data), "--scores", str(tmp_path / "scores"), "--out", str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    assert "official score" in done.stdout
    for name in ("evaluation.json", "roc.png", "score_histogram.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0


def test_train_shows_the_label_free_choice(tmp_path):
    data = tmp_path / "data"
    assert run("data", "synth", str(data), "--profile", "tiny", "-m", "fan", "-q").returncode == 0
    (tmp_path / "twfr.yaml").write_text("detector:\n  family: twfr\n  twfr: {r_grid: [0.0, 0.9, 1.0]}\n")
    done = run("train", str(data), "--profile", "tiny", "--config", str(tmp_path / "twfr.yaml"),
               "--out", str(tmp_path / "det"), "-q")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("selection: proxy -> ") for line in lines), done.stdout
    # every candidate's row: the grid and the fixed default (knn r=0.5), with both scorers
    assert sum(line.strip().startswith(("knn r=", "gmm r=")) for line in lines) == 8
    assert sum(line.rstrip().endswith("<") for line in lines) == 1  # the chosen one marked


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("train", "/nonexistent/data"), "/nonexistent/data"),
        (("train", ".", "--config", "{config}"), "malformed YAML"),
        (("score", "{empty}"), "{empty}"),
        (("data", "synth", "{tmp}/x", "--profile", "gigantic"), "unknown profile"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, args, fragment):
    (tmp_path / "bad.yaml").write_text("detector: [oops\n")
    (tmp_path / "empty").mkdir()
    subs = {"{config}": str(tmp_path / "bad.yaml"), "{empty}": str(tmp_path / "empty"), "{tmp}": str(tmp_path)}

    def fill(text):
        for key, value in subs.items():
            text = text.replace(key, value)
        return text

    done = run(*(fill(a) for a in args), cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("asdflow: error:"), done.stderr
    assert fill(fragment) in lines[0]
