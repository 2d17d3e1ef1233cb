import pytest

from asdflow.config import load_config
from asdflow.errors import ConfigError


def test_profiles_change_sizes_not_structure():
    tiny, demo, full = (load_config(profile=p) for p in ("tiny", "demo", "full"))
    assert tiny.profile == "tiny" and full.profile == "full"
    assert tiny.synth.n_train_source < demo.synth.n_train_source < full.synth.n_train_source
    assert tiny.detector.baseline_ae.epochs < full.detector.baseline_ae.epochs == 100
    assert full.synth.n_train_source == 990 and full.synth.n_train_target == 10
    assert full.synth.n_test_per_condition == 50
    # same sections whatever the profile
    assert tiny.model_dump().keys() == full.model_dump().keys()
    assert full.features.n_mels == 128 and full.features.n_frames == 5 and full.features.hop_length == 512


def test_default_profile_is_demo():
    assert load_config().profile == "demo"


def test_user_file_merges_over_profile(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("profile: tiny\ndetector:\n  baseline_ae:\n    epochs: 7\n")
    cfg = load_config(path)
    assert cfg.profile == "tiny"
    assert cfg.detector.baseline_ae.epochs == 7
    assert cfg.detector.baseline_ae.batch_size == 64  # still the tiny profile's


def test_explicit_profile_beats_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("profile: tiny\n")
    assert load_config(path, profile="full").profile == "full"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("detector: [unclosed\n", "malformed YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("detector:\n  epochz: 3\n", "detector.epochz"),
        ("features:\n  n_mels: lots\n", "features.n_mels"),
        ("profile: huge\n", "unknown profile"),
    ],
)
def test_bad_configs_say_what_and_where(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_tracking_uri_from_the_environment(monkeypatch):
    from asdflow import config as config_module

    cluster = {"MLFLOW_TRACKING_URI": "http://mlflow.asdflow.svc:5000"}
    assert config_module.environment_overrides(cluster) == {"tracking": {"tracking_uri": cluster["MLFLOW_TRACKING_URI"]}}
    monkeypatch.setattr(config_module, "_PROCESS_ENVIRONMENT", cluster)
    assert load_config(profile="tiny").tracking.tracking_uri == "http://mlflow.asdflow.svc:5000"
    # set later in the process (as mlflow.set_tracking_uri does): not a cluster setting, ignored
    monkeypatch.setattr(config_module, "_PROCESS_ENVIRONMENT", {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/elsewhere.db")
    assert load_config(profile="tiny").tracking.tracking_uri.startswith("sqlite:///mlruns")


def test_the_request_cap_follows_the_longest_clip_unless_set():
    from asdflow.config import ServingConfig

    derived = ServingConfig().request_cap
    assert 20e6 < derived < 22e6  # 30 s as JSON floats at 32 kHz, not a fixed 64 MB
    assert ServingConfig(max_seconds=10.0).request_cap < derived
    assert ServingConfig(max_request_bytes=1234).request_cap == 1234
    assert ServingConfig(max_upload_bytes=40_000_000).request_cap > 40_000_000  # an upload always fits
