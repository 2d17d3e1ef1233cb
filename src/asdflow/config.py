"""Typed configuration: defaults + a profile + the user's YAML, validated by pydantic.

Profiles (`tiny`, `demo`, `full`) change sizes and counts, never the code path.
Files live in `configs/` at the project root (or `$ASDFLOW_CONFIG_DIR`):
`defaults.yaml`, then `profiles/<profile>.yaml`, then the user's `--config`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from asdflow.config_base import StrictModel
from asdflow.detectors.family_configs import (
    AudDSRConfig, ConditionalAEConfig, DiscriminatorConfig, TimePoolingConfig, TWFRConfig,
)
from asdflow.errors import ConfigError
from asdflow.prompts.config import PromptConfig
from asdflow.simulation.config import SimulationConfig
from asdflow.synthesis.config import SynthesisConfig

PROFILES = ("tiny", "demo", "full")


class FeatureConfig(StrictModel):
    """Log-mel settings of the DCASE baseline."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    power: float = 2.0
    n_frames: int = 5  # frames stacked into one input vector
    log_offset: float = 1e-8  # inside the log, so silence maps to a finite value
    torch_threads: int | None = 1  # intra-op threads for the STFT (None: torch's default)


class BaselineAEConfig(StrictModel):
    """The DCASE baseline autoencoder (Linear+BN+ReLU 128x4, bottleneck 8, mirror)."""

    hidden_size: int = 128
    n_hidden_layers: int = 4
    bottleneck_size: int = 8
    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    score: Literal["mse", "mahalanobis"] = "mse"
    max_frames_per_clip: int | None = None  # subsample stacked frames for speed (None: all)
    num_threads: int | None = 1  # torch threads while training/scoring (None: torch's default)
    time_pooling: TimePoolingConfig = Field(default_factory=TimePoolingConfig)  # of the frame scores (GWRP r)


class DetectorConfig(StrictModel):
    family: str = "twfr"
    threshold_quantile: float = Field(0.9, gt=0, lt=1)  # of a gamma fitted to training scores
    baseline_ae: BaselineAEConfig = Field(default_factory=BaselineAEConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    conditional_ae: ConditionalAEConfig = Field(default_factory=ConditionalAEConfig)
    auddsr: AudDSRConfig = Field(default_factory=AudDSRConfig)
    twfr: TWFRConfig = Field(default_factory=TWFRConfig)
    # The training pipeline trains each of these and registers each as a challenger (None: just `family`).
    families: list[str] | None = None


class AnomalyKindConfig(StrictModel):
    enabled: bool = True
    weight: float = Field(1.0, ge=0)  # relative frequency among anomalies
    severity: float | None = Field(None, ge=0, le=1)  # overrides SynthConfig.severity for this kind


class SynthConfig(StrictModel):
    """The synthetic machine-sound generator (DCASE layout, deterministic from the seed)."""

    # The anomaly kinds asdflow.data.synth_anomalies implements (kept here so config
    # validation does not import the generator).
    ANOMALY_KINDS: ClassVar[tuple[str, ...]] = (
        "bearing_defect",
        "imbalance",
        "friction_squeal",
        "rattle",
        "clogging",
    )

    machine_types: list[str] = Field(default_factory=lambda: ["fan", "pump"], min_length=1)
    sections: list[str] = Field(default_factory=lambda: ["00"], min_length=1)
    sample_rate: int = Field(16000, ge=8000)
    duration: float = Field(10.0, gt=0)  # seconds per clip
    n_train_source: int = Field(990, ge=0)
    n_train_target: int = Field(10, ge=0)
    n_test_per_condition: int = Field(50, ge=0)  # per domain and per condition (normal, anomaly)
    n_supplemental_clean: int = Field(20, ge=0)
    n_supplemental_noise: int = Field(20, ge=0)
    # 0 (anomaly ~40 dB below the machine) .. 1 (~5 dB above); the default is calibrated to be neither
    severity: float = Field(0.5, ge=0, le=1)
    severity_spread: float = Field(0.1, ge=0, le=0.5)  # per-clip severity: uniform +- this, clipped to [0, 1]
    snr_db_source: tuple[float, float] = (6.0, 12.0)  # machine-to-background SNR range per clip
    snr_db_target: tuple[float, float] = (0.0, 6.0)  # the target domain is noisier (and another background)
    anomaly_kinds: dict[str, AnomalyKindConfig] = Field(default_factory=dict)  # empty: all kinds, equal weight
    seed: int = Field(0, ge=0)

    @field_validator("machine_types")
    @classmethod
    def _machine_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", name):
                raise ValueError(f"machine type {name!r}: use letters, digits and '-' only (it names a folder)")
        if len(set(names)) != len(names):
            raise ValueError(f"machine types repeat: {names}")
        return names

    @field_validator("sections")
    @classmethod
    def _section_names(cls, sections: list[str]) -> list[str]:
        for section in sections:
            if not re.fullmatch(r"\d\d", section):
                raise ValueError(f"section {section!r}: must be two digits such as '00'")
        if len(set(sections)) != len(sections):
            raise ValueError(f"sections repeat: {sections}")
        return sections

    @field_validator("snr_db_source", "snr_db_target")
    @classmethod
    def _snr_range(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if bounds[0] > bounds[1]:
            raise ValueError(f"SNR range {bounds}: low bound above high bound")
        return bounds

    @field_validator("anomaly_kinds")
    @classmethod
    def _known_kinds(cls, kinds: dict[str, AnomalyKindConfig]) -> dict[str, AnomalyKindConfig]:
        unknown = sorted(set(kinds) - set(cls.ANOMALY_KINDS))
        if unknown:
            raise ValueError(f"unknown anomaly kind(s) {unknown}: known are {list(cls.ANOMALY_KINDS)}")
        settings = [kinds.get(k, AnomalyKindConfig()) for k in cls.ANOMALY_KINDS]
        if not any(s.enabled and s.weight > 0 for s in settings):
            raise ValueError("no anomaly kind is enabled (with a weight above 0): enable at least one")
        return kinds

    def enabled_anomaly_kinds(self) -> dict[str, AnomalyKindConfig]:
        """Kind -> its settings, for every enabled kind with a positive weight (config order)."""
        chosen = {k: self.anomaly_kinds.get(k, AnomalyKindConfig()) for k in self.ANOMALY_KINDS}
        return {k: c for k, c in chosen.items() if c.enabled and c.weight > 0}


class ValidationConfig(StrictModel):
    """Great Expectations suite on the manifest (asdflow.validation)."""

    sample_rate: int = 16000
    channels: int = 1
    min_duration: float = 1.0  # seconds; per machine type below overrides
    max_duration: float = 20.0
    duration_by_machine: dict[str, tuple[float, float]] = Field(default_factory=dict)
    rms_floor: float = 1e-4  # below it a clip counts as silent
    max_clipping_ratio: float = 0.01  # fraction of samples at full scale
    clipping_level: float = 0.999  # |x| at or above this (of full scale 1.0) counts as clipped
    min_train_per_domain: int = 1
    min_test_per_domain_and_label: int = 1
    require_both_domains: bool = True  # source and target in train and test per machine type (off for DCASE 2020 data)
    quarantine: bool = False  # drop bad clips and go on, recording which and why
    stats_workers: int = 2  # threads reading clips for the per-clip statistics


class GateConfig(StrictModel):
    """The promotion gate: challenger vs champion on the same pinned evaluation set."""

    metric: Literal["official", "auc_source", "auc_target", "pauc"] = "official"
    absolute_floor: float = 0.5  # a challenger below this is never promoted
    min_improvement: float = 0.0  # over the champion's score, re-measured in the same step
    # What the gate judges on (asdflow.evaluation.gate_evidence): `auto` = labelled anomalies of the
    # evaluation split when it has them, else held-out normals plus anomalies simulated from them.
    evidence: Literal["auto", "labelled", "simulated"] = "auto"
    min_heldout_normals: int = Field(4, ge=2)  # fewer labelled test normals: hold training normals out
    holdout_fraction: float = Field(0.1, gt=0, lt=1)  # of the training normals, picked by name hash
    max_simulated_from: int = Field(50, ge=1)  # held-out normals that anomalies are simulated from
    simulated_kinds: list[Literal["impacts", "resonance", "tilt", "modulation", "band_segments", "perlin"]] = Field(
        default_factory=lambda: ["impacts", "resonance", "tilt", "band_segments", "perlin"], min_length=1
    )
    # relative to the clip; a wide spread of difficulty so that ranking models works on easy data too
    # (at -15..-5 dB two tiny detectors of clearly different quality both scored ~1.0, at -30..0 1.0 vs 0.89)
    simulated_level_db: tuple[float, float] = (-30.0, 0.0)
    seed: int = Field(0, ge=0)


class TrackingConfig(StrictModel):
    """MLflow: a SQLite file and a local artifact dir on one machine, a server on a cluster."""

    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_location: str = "mlruns/artifacts"
    experiment: str = "asdflow"
    model_name_template: str = "asd-{machine_type}"


class GpuConfig(StrictModel):
    """Where GPU-capable steps run on a cluster (kfp-kubernetes); ignored by kfp.local."""

    accelerator_type: str = "nvidia.com/gpu"  # passed to set_accelerator_type
    accelerator_limit: int = 1
    node_selector_key: str = "cloud.google.com/gke-nodepool"
    node_selector_value: str = "asdflow-gpu"
    toleration_key: str = "nvidia.com/gpu"
    toleration_value: str = "present"
    toleration_effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class ClusterConfig(StrictModel):
    """The images the KFP components run in, and the GPU node pool.

    infra/ (Dockerfiles, kustomize, Terraform) is checked against these values by
    tests/infra, so this class is the single source of truth for names.
    """

    image_cpu: str = "ghcr.io/asdflow/asdflow:0.1.0-cpu"  # components + the detector server
    image_gpu: str = "ghcr.io/asdflow/asdflow:0.1.0-cuda"  # GPU-capable components
    image_mlflow: str = "ghcr.io/asdflow/asdflow-mlflow:0.1.0"  # the MLflow tracking server
    service_account: str = "asdflow-pipeline-runner"
    mlflow_secret: str = "asdflow-mlflow"
    dvc_secret: str = "asdflow-dvc-remote"
    # Every key of each Secret becomes an env var of the same name in the component
    # (kfp-kubernetes use_secret_as_env); the Secrets in infra/k8s carry exactly these keys.
    mlflow_secret_keys: list[str] = Field(
        default_factory=lambda: ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    )
    dvc_secret_keys: list[str] = Field(
        default_factory=lambda: ["DVC_REMOTE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"]
    )
    gpu: GpuConfig = Field(default_factory=GpuConfig)


class ServingConfig(StrictModel):
    """The BentoML detector service."""

    # None: every registered asd-<machine_type> model with a @champion (hot reload picks up new ones);
    # a list narrows the server to those machine types
    machine_types: list[str] | None = None
    host: str = "127.0.0.1"
    port: int = 3000
    min_seconds: float = 1.0
    max_seconds: float = 30.0
    max_upload_bytes: int = 8 * 1024 * 1024  # one uploaded audio file
    # any request body; None: room for a `max_seconds` clip as a JSON float array at 32 kHz (~22 bytes a
    # sample): 21 MB for 30 s, where a fixed 64 MB let two bodies block the event loop for 14 s
    max_request_bytes: int | None = None

    @property
    def request_cap(self) -> int:
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return max(int(self.max_seconds * 32_000 * 22) + 64 * 1024, self.max_upload_bytes + 64 * 1024)
    reload_interval_s: float = Field(10.0, gt=0)  # how often the server looks for a newly promoted champion
    workers: int = Field(1, ge=1)  # server processes, each holding every model
    threads: int = Field(2, ge=1)  # scoring threads per worker (torch and BLAS release the GIL)
    max_batch_size: int = Field(32, ge=2)  # adaptive batching of /score_batch (BentoML wants > 1)
    max_latency_ms: int = Field(2000, ge=1)  # a batch waits at most this long (BentoML adaptive batching)
    timeout_s: int = Field(60, ge=1)  # per request


class DataVersionConfig(StrictModel):
    """DVC (asdflow.data.versioning): data.dvc tracks `data_dir`, pushed to `remote`.

    `.dvc/config` at the project root declares both remotes with these defaults
    (tests/data/test_versioning.py checks that they agree).
    """

    data_dir: str = "data"  # relative to the project root; its pointer file is `<data_dir>.dvc`
    remote: str = "local"  # the remote push and pull use: `local_remote`, `object_store_remote` or any in .dvc/config
    local_remote: str = "local"
    # Outside the checkout, so deleting or re-cloning the project keeps the data; content-addressed, so clones share it.
    local_remote_url: str = "~/.cache/asdflow/dvc-remote"
    object_store_remote: str = "s3"
    # A template to edit (or override with $DVC_REMOTE_URL, the cluster Secret's key); needs dvc-s3 / dvc-gs installed.
    object_store_url: str = "s3://asdflow-data/dvc-store"

    @field_validator("data_dir")
    @classmethod
    def _relative_dir(cls, value: str) -> str:
        parts = Path(value).parts
        if not parts or Path(value).is_absolute() or ".." in parts:
            raise ValueError(f"data_dir {value!r}: must be a folder inside the project, e.g. 'data'")
        return Path(value).as_posix()


class SeparationConfig(StrictModel):
    """Conv-TasNet separation stage (machine, noise); class defaults = the paper's sizes."""

    enabled: bool = False
    # Conv-TasNet sizes (Luo & Mesgarani): encoder filters N, kernel L, bottleneck B,
    # conv channels H, conv kernel P, blocks per repeat X, repeats R
    N: int = Field(512, ge=1)
    L: int = Field(16, ge=2)
    B: int = Field(128, ge=1)
    H: int = Field(512, ge=1)
    P: int = Field(3, ge=1)
    X: int = Field(8, ge=1)
    R: int = Field(3, ge=1)
    sample_rate: int = Field(16000, ge=8000)
    segment_seconds: float = Field(4.0, gt=0)  # training mixture length
    snr_db: tuple[float, float] = (-5.0, 5.0)  # machine-to-noise SNR range of training mixtures
    gain_db: tuple[float, float] = (-6.0, 6.0)  # random overall gain of each mixture
    batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    grad_clip: float | None = Field(5.0, gt=0)  # largest gradient L2 norm (the paper's 5); null: no clipping
    steps: int = Field(2000, ge=1)
    checkpoint_every: int = Field(100, ge=1)
    chunk_seconds: float = Field(4.0, gt=0)  # denoising: chunk length
    overlap: float = Field(0.5, ge=0, lt=1)  # denoising: overlap fraction between chunks
    # what the detectors get: original audio, separated audio (train and score), or both
    # (the separated train clips as extra training data, scoring on the originals; the report's use)
    use: Literal["original", "separated", "both"] = "original"
    # evaluation on held-out mixtures: this fraction of each supplemental kind (clean, noise) is kept
    # out of training when a kind has 2+ clips; mixtures per SNR, each `segment_seconds` long
    eval_fraction: float = Field(0.2, ge=0, lt=1)
    eval_mixtures: int = Field(20, ge=1)
    eval_snr_db: list[float] = Field(default_factory=lambda: [-5.0, 0.0, 5.0], min_length=1)
    seed: int = Field(0, ge=0)

    @field_validator("snr_db", "gain_db")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"range {list(value)}: the low end comes first")
        return value


class AsdflowConfig(StrictModel):
    profile: Literal["tiny", "demo", "full"] = "demo"
    seed: int = 0
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    data: DataVersionConfig = Field(default_factory=DataVersionConfig)
    separation: SeparationConfig = Field(default_factory=SeparationConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    progress: bool = True  # progress bars on long work


def config_dir() -> Path:
    env = os.environ.get("ASDFLOW_CONFIG_DIR")
    if env:
        return Path(env)
    # src/asdflow/config.py -> project root; editable installs and the images keep configs/ there
    return Path(__file__).resolve().parents[2] / "configs"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"malformed YAML in {path}{line}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# Read once, when this module is first imported: `mlflow.set_tracking_uri` writes the same
# variable into os.environ, so a later read would see whichever store the process used last.
_PROCESS_ENVIRONMENT = {"MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI")}


def environment_overrides(environ: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Settings a cluster injects as environment variables (from Secrets), above the files."""
    uri = (_PROCESS_ENVIRONMENT if environ is None else environ).get("MLFLOW_TRACKING_URI")
    return {"tracking": {"tracking_uri": uri}} if uri else {}


def load_config(
    path: str | Path | None = None,
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> AsdflowConfig:
    """defaults.yaml <- profiles/<profile>.yaml <- the user's file <- environment <- overrides."""
    root = config_dir()
    data: dict[str, Any] = {}
    defaults = root / "defaults.yaml"
    if defaults.exists():
        data = _read_yaml(defaults)
    user = _read_yaml(Path(path)) if path else {}
    chosen = profile or user.get("profile") or data.get("profile") or "demo"
    if chosen not in PROFILES:
        raise ConfigError(f"unknown profile {chosen!r}: choose one of {', '.join(PROFILES)}")
    profile_file = root / "profiles" / f"{chosen}.yaml"
    if profile_file.exists():
        data = deep_merge(data, _read_yaml(profile_file))
    data = deep_merge(data, user)
    data = deep_merge(data, environment_overrides())
    data = deep_merge(data, overrides or {})
    data["profile"] = chosen
    try:
        return AsdflowConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        source = f" ({path})" if path else ""
        raise ConfigError(f"invalid config{source}: {where}: {first['msg']}") from None
