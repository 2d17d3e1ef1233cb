"""The prompt table on the tiny dataset: every strategy, CLAP ranking, problems, errors, the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from asdflow.data.audio import load_audio
from asdflow.data.manifest import Manifest
from asdflow.errors import ConfigError, DataError
from asdflow.features.spectral_stats import STAT_NAMES
from asdflow.prompts import build_prompt_table, write_prompt_table
from asdflow.prompts.captioner import BuiltinCaptioner, ClipContext, PipelineCaptioner, make_captioner
from asdflow.prompts.clap import mean_similarity_matrix, tiny_clap
from asdflow.prompts.config import CaptionerConfig
from asdflow.prompts.table import COLUMNS, select_clips

MACHINE = "fan"


@pytest.fixture(scope="module")
def table(fan_manifest, tiny_config):
    return build_prompt_table(fan_manifest, MACHINE, tiny_config)


def test_every_clip_gets_a_row_per_strategy(table, fan_manifest, tiny_config):
    clips = [r.name for r in select_clips(fan_manifest, MACHINE, tiny_config.prompts)]
    assert list(table.columns) == COLUMNS
    assert len(clips) == tiny_config.prompts.max_clips and all("_train_normal_" in c for c in clips)
    assert list(table["strategy"].unique()) == ["template", "spectral", "metadata", "clap_ranked"]
    for strategy, rows in table.groupby("strategy"):
        assert sorted(rows["clip"]) == sorted(clips), strategy
    assert (table["machine_type"] == MACHINE).all()
    assert set(table.loc[table.strategy == "template", "text"]) == {"The normal condition machine sound of fan."}
    assert table.loc[table.strategy != "clap_ranked", "score"].isna().all()
    assert table.loc[table.strategy == "clap_ranked", "score"].between(-1, 1).all()


def test_spectral_prompts_state_levels_within_the_machine_type(table):
    stats = table.attrs["statistics"]
    assert len(stats) == len(table[table.strategy == "spectral"])
    for row in table[table.strategy == "spectral"].itertuples():
        levels = stats.set_index("clip").loc[row.clip]
        for stat, phrase in [("flux", "spectral flux"), ("rms", "RMS level"), ("zcr", "zero-crossing rate")]:
            assert f"{levels[f'{stat}_level']} {phrase}" in row.text
    # normalised per machine type: quantiles spread over the bins, not all in one
    assert all(stats[f"{n}_level"].nunique() > 1 for n in STAT_NAMES)


def test_metadata_prompts_come_from_the_file_names(table, fan_manifest):
    attributes = {r.name: r.attributes for r in fan_manifest.records}
    for row in table[table.strategy == "metadata"].itertuples():
        attrs = attributes[row.clip]
        assert row.text.startswith("This is the normal sound of a fan with ")
        assert all(value in row.text for value in attrs.values()), (row.text, attrs)


def test_clap_ranked_keeps_the_best_candidate_by_mean_similarity(fan_manifest, tiny_config):
    scorers = [tiny_clap(seed=0), tiny_clap(seed=1)]
    manifest = Manifest(root="", records=select_clips(fan_manifest, MACHINE, tiny_config.prompts)[:3])
    table = build_prompt_table(manifest, MACHINE, tiny_config, ["clap_ranked"], scorers=scorers)
    assert list(table["strategy"]) == ["clap_ranked"] * 3
    stats = table.attrs["statistics"].set_index("clip", drop=False)
    captioner = BuiltinCaptioner(tiny_config.prompts.captioner.n_candidates)
    from asdflow.prompts.table import clip_context

    for row, record in zip(table.itertuples(), manifest.records):
        wav = load_audio(record.path, 16000)
        candidates = captioner.candidates(clip_context(record, stats), wav, 16000)
        assert len(candidates) > 3
        sims = mean_similarity_matrix(scorers, [wav], 16000, candidates)[0]
        assert row.text == candidates[int(np.argmax(sims))]
        assert row.score == pytest.approx(float(sims.max()), abs=1e-5)


class ListeningModel:
    """A local stand-in with the transformers pipeline convention, to test the wiring of the hook."""

    def __init__(self):
        self.calls = []

    def __call__(self, inputs, **kwargs):
        self.calls.append((inputs["raw"].shape, inputs["sampling_rate"], kwargs))
        return [{"text": "A fan humming steadily."}, {"text": "A fan humming steadily."}, {"text": "Wind noise."}]


def test_an_audio_language_model_captioner_is_ranked_with_the_builtin_candidates(fan_manifest, tiny_config):
    model = ListeningModel()
    captioner = PipelineCaptioner(model, n_candidates=3, builtin=BuiltinCaptioner(2), call_kwargs={"k": 1})
    manifest = Manifest(root="", records=select_clips(fan_manifest, MACHINE, tiny_config.prompts)[:2])
    table = build_prompt_table(manifest, MACHINE, tiny_config, "clap_ranked", captioner=captioner)
    assert len(model.calls) == 2 and model.calls[0][1] == 16000 and model.calls[0][2] == {"k": 1}
    assert model.calls[0][0] == (16000,)  # tiny clips: 1 s at the prompts sample rate
    record = manifest.records[0]
    candidates = captioner.candidates(ClipContext(record.name, MACHINE, record.attributes), np.zeros(10, np.float32),
                                      16000)
    assert candidates[:2] == ["A fan humming steadily.", "Wind noise."], "the model's captions first, once each"
    assert candidates[2:] == BuiltinCaptioner(2).candidates(ClipContext(record.name, MACHINE, record.attributes))
    assert table.loc[0, "text"] in candidates


def test_a_transformers_pipeline_built_from_config_captions_each_clip(fan_manifest, tiny_config,
                                                                       tiny_speech_model_dir):
    from asdflow.config import load_config

    config = load_config(profile="tiny", overrides={"progress": False, "prompts": {"captioner": {
        "kind": "pipeline", "model": str(tiny_speech_model_dir), "n_candidates": 3}}})
    captioner = make_captioner(config.prompts.captioner)
    assert isinstance(captioner, PipelineCaptioner) and captioner.builtin is not None
    record = select_clips(fan_manifest, MACHINE, config.prompts)[0]
    context = ClipContext(record.name, MACHINE, record.attributes)
    candidates = captioner.candidates(context, load_audio(record.path, 16000), 16000)
    heard = candidates[0]
    assert heard and heard not in BuiltinCaptioner(3).candidates(context), "the model's own transcript comes first"
    assert candidates[1:] == BuiltinCaptioner(3).candidates(context)
    manifest = Manifest(root="", records=[record])
    table = build_prompt_table(manifest, MACHINE, config, ["clap_ranked"])
    from asdflow.prompts.table import clip_context

    with_levels = clip_context(record, table.attrs["statistics"].set_index("clip", drop=False))
    assert len(table) == 1 and table.loc[0, "text"] in [heard, *BuiltinCaptioner(3).candidates(with_levels)]


def test_pipeline_captioner_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs a model"):
        make_captioner(CaptionerConfig(kind="pipeline"))
    with pytest.raises(ConfigError, match="not found"):
        make_captioner(CaptionerConfig(kind="pipeline", model=str(tmp_path / "no-model")))
    assert isinstance(make_captioner(CaptionerConfig()), BuiltinCaptioner)


def test_clips_without_attributes_get_no_metadata_row_and_unreadable_clips_are_listed(fan_manifest, tiny_config,
                                                                                      tmp_path):
    records = select_clips(fan_manifest, MACHINE, tiny_config.prompts)[:3]
    broken = tmp_path / "section_00_source_train_normal_0999_speed_1.wav"
    broken.write_bytes(b"not audio")
    records = [records[0].model_copy(update={"attributes": {}}), records[1],
               records[2].model_copy(update={"path": str(broken), "name": broken.name})]
    table = build_prompt_table(Manifest(root="", records=records), MACHINE, tiny_config,
                               ["template", "spectral", "metadata"])
    rows = {s: set(g["clip"]) for s, g in table.groupby("strategy")}
    assert rows["template"] == {r.name for r in records}
    assert rows["metadata"] == {records[1].name, broken.name}, "no attributes, no made-up caption"
    assert rows["spectral"] == {records[0].name, records[1].name}, "the unreadable clip has no statistics"
    [problem] = table.attrs["problems"]
    assert problem["clip"] == broken.name and "not a readable audio file" in problem["reason"]


def test_errors_are_one_clear_line(fan_manifest, tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="unknown prompt strategy 'captions'"):
        build_prompt_table(fan_manifest, MACHINE, tiny_config, ["template", "captions"])
    with pytest.raises(DataError, match="no normal clips of machine type 'valve'"):
        build_prompt_table(fan_manifest, "valve", tiny_config)
    from asdflow.config import load_config

    missing = load_config(profile="tiny", overrides={"progress": False, "prompts": {"clap": {"checkpoints": [
        {"name": "630k-best", "backend": "laion_clap", "path": str(tmp_path / "630k-best.pt")}]}}})
    with pytest.raises(ConfigError, match="CLAP checkpoint not found: .*630k-best.pt"):
        build_prompt_table(fan_manifest, MACHINE, missing)


def run_cli(monkeypatch, capsys, *args):
    from asdflow.cli import main

    monkeypatch.setattr(sys, "argv", ["asdflow", *args])
    with pytest.raises(SystemExit) as done:
        main()
        raise SystemExit(0)
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_cli_writes_the_table_and_a_summary(tiny_dataset, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "prompts", "--data", str(tiny_dataset), "--machine-type", MACHINE,
                             "--out", str(tmp_path / "p"), "--profile", "tiny", "--strategies", "template,metadata",
                             "-s", "spectral", "-q")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "p" / "prompts.csv")
    assert set(table["strategy"]) == {"template", "metadata", "spectral"}
    summary = json.loads((tmp_path / "p" / "prompts_summary.json").read_text())
    assert summary["rows_per_strategy"] == {"template": 8, "spectral": 8, "metadata": 8} and summary["clap"] is None
    assert (tmp_path / "p" / "spectral_statistics.csv").exists()
    assert f"prompts for {MACHINE}: 8 clips, 24 rows" in out


@pytest.mark.parametrize("args, fragment", [
    (["--strategies", "poems"], "unknown prompt strategy 'poems'"),
    (["--machine-type", "valve"], "no folder for machine type(s) valve"),
])
def test_cli_errors_are_one_line(tiny_dataset, tmp_path, monkeypatch, capsys, args, fragment):
    base = {"--data": str(tiny_dataset), "--machine-type": MACHINE, "--out": str(tmp_path / "p")}
    base.update(dict(zip(args[::2], args[1::2])))
    code, out, err = run_cli(monkeypatch, capsys, "prompts", *[x for kv in base.items() for x in kv], "-q",
                             "--profile", "tiny")
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_cli_refuses_an_empty_data_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "prompts", "--data", str(tmp_path / "data"), "-m", MACHINE,
                           "--out", str(tmp_path / "p"), "-p", "tiny")
    assert code == 2 and err.startswith("asdflow: error:") and len(err.strip().splitlines()) == 1


def test_write_prompt_table_reads_a_saved_manifest(fan_manifest, tiny_config, tmp_path):
    fan_manifest.save(tmp_path / "m")
    run = write_prompt_table(tmp_path / "out", MACHINE, tiny_config, manifest=tmp_path / "m",
                             strategies=["template", "clap_ranked"])
    assert run.summary["rows_per_strategy"] == {"template": 8, "clap_ranked": 8}
    assert run.summary["clap"]["checkpoints"] == ["tiny-random"]
    assert "CLAP over tiny-random" in run.describe()
