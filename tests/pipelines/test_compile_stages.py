"""The compiled training pipeline with synthesis, simulation and several detector families:
each stage present (GPU-placed where it trains or generates) only when the config asks for it,
one train -> score -> evaluate -> register chain per family, and the gate handed every version."""

from __future__ import annotations

from asdflow.config import load_config
from pipelines.training import build_training_pipeline, families
from tests.pipelines.test_compile import CLUSTER, compiled
from tests.pipelines.test_compile_separation import producer, tasks

FAMILIES = ["baseline_ae", "conditional_ae", "auddsr"]
SYNTHESIS = ("build-prompts", "tango-finetune", "generate-synthetic-normals")


def build(tmp_path, **overrides):
    config = load_config(profile="full", overrides={"cluster": CLUSTER, **overrides})
    return compiled(build_training_pipeline(config), tmp_path / "training.yaml")


def test_synthesis_and_simulation_steps_and_the_gpu_pool(tmp_path):
    spec, platform = build(tmp_path, synthesis={"enabled": True, "add_to_training": True},
                           simulation={"enabled": True})
    dag = tasks(spec)
    assert set(SYNTHESIS) | {"simulate-anomalies"} <= set(dag)
    assert producer(dag["build-prompts"], "manifest") == ("validate-data", "manifest")
    assert producer(dag["tango-finetune"], "prompts") == ("build-prompts", "prompts")
    assert producer(dag["generate-synthetic-normals"], "model") == ("tango-finetune", "model")
    assert producer(dag["train-detector"], "synthetic") == ("generate-synthetic-normals", "synthetic")
    executors = spec["deploymentSpec"]["executors"]
    gpu = CLUSTER["gpu"]
    for name in ("exec-tango-finetune", "exec-generate-synthetic-normals"):
        assert executors[name]["container"]["image"] == CLUSTER["image_gpu"]
        assert executors[name]["container"]["resources"]["accelerator"]["resourceType"] == gpu["accelerator_type"]
        assert platform[name]["nodeSelector"]["labels"] == {gpu["node_selector_key"]: gpu["node_selector_value"]}
    for name in ("exec-build-prompts", "exec-simulate-anomalies"):
        assert executors[name]["container"]["image"] == CLUSTER["image_cpu"]
        assert "resources" not in executors[name]["container"]


def test_synthetic_normals_stay_out_of_training_unless_asked(tmp_path):
    spec, _ = build(tmp_path, synthesis={"enabled": True, "add_to_training": False})
    assert "synthetic" not in tasks(spec)["train-detector"]["inputs"]["artifacts"]


def test_one_chain_per_family_and_the_gate_gets_every_version(tmp_path):
    spec, _ = build(tmp_path, detector={"families": FAMILIES})
    dag = tasks(spec)
    trains = ["train-detector", "train-detector-2", "train-detector-3"]
    assert [dag[t]["inputs"]["parameters"]["family"]["runtimeValue"]["constant"] for t in trains] == FAMILIES
    for i, suffix in enumerate(["", "-2", "-3"]):
        assert producer(dag[f"score-clips{suffix}"], "detector") == (trains[i], "detector")
        assert producer(dag[f"register-challenger{suffix}"], "evaluation") == (f"evaluate-scores{suffix}", "evaluation")
    # the register steps are chained, so the last one returns every version this run registered
    chained = dag["register-challenger-3"]["inputs"]["parameters"]["registered_before"]["taskOutputParameter"]
    assert chained["producerTask"] == "register-challenger-2"
    gate = dag["gate-challenger"]["inputs"]["parameters"]["challenger_version"]["taskOutputParameter"]
    assert gate["producerTask"] == "register-challenger-3"


def test_default_config_adds_nothing(tmp_path):
    spec, _ = build(tmp_path)
    dag = tasks(spec)
    assert not (set(SYNTHESIS) | {"simulate-anomalies", "train-detector-3"}) & set(dag)
    # the default families, twfr and baseline_ae, each with its own chain; the gate keeps the better one
    trains = ["train-detector", "train-detector-2"]
    assert [dag[t]["inputs"]["parameters"]["family"]["runtimeValue"]["constant"] for t in trains] == ["twfr", "baseline_ae"]
    single, _ = build(tmp_path, detector={"families": None})
    assert "family" not in tasks(single)["train-detector"]["inputs"].get("parameters", {})
    assert "train-detector-2" not in tasks(single)
    assert families(load_config(profile="tiny", overrides={"detector": {"families": ["auddsr", "auddsr"]}})) == ["auddsr"]
