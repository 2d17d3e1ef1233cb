"""Settings of the detector families beyond the baseline (imported by asdflow.config: no heavy imports)."""

import typing

from pydantic import Field, field_validator

from asdflow.config_base import StrictModel
from asdflow.simulation.config import SimulationConfig


class SelectionConfig(StrictModel):
    """Label-free choice of a setting (asdflow.detectors.selection): from normal clips alone."""

    strategy: typing.Literal["proxy", "fusion_mean", "fusion_min", "fixed"] = "proxy"
    n_folds: int = Field(4, ge=2)  # K of the K-fold over the training normals
    folds_used: int | None = Field(None, ge=1)  # held out in turn (None: all; the torch families hold out one)
    max_anomalous_clips: int = Field(100, ge=1)  # held-out clips that anomalies are simulated from (time bound)
    min_clips: int = Field(8, ge=2)  # fewer training clips: the fixed default, said in fit_info
    # the simulated anomaly kinds of asdflow.simulation.waveform_anomalies, one of each per held-out clip
    anomaly_kinds: list[typing.Literal["impacts", "resonance", "tilt", "modulation", "band_segments", "perlin"]] = Field(
        default_factory=lambda: ["impacts", "resonance", "tilt", "band_segments", "perlin"], min_length=1
    )
    level_db: tuple[float, float] = (-5.0, 5.0)  # anomaly level relative to the clip (subtle enough not to saturate)
    max_fpr: float = Field(0.1, gt=0, le=1)  # of the proxy pAUC
    tie_tolerance: float = Field(0.01, ge=0)  # proxy hmeans this close to the best count as tied
    fusion_folds: int | None = None  # held-out scores that z-normalise the fused candidates (None: leave-one-out)
    seed: int = Field(0, ge=0)


class TimePoolingConfig(StrictModel):
    """How a frame-based family pools its per-frame (or per-patch) scores into the clip score: GWRP r.

    `r: auto` chooses r per machine type from normal clips alone (`selection`: a copy of the
    detector fitted on all but one fold scores the held-out clips and anomalies simulated from
    them, for every r of `r_grid`), then fits on every clip; a number fixes r (0 = max, 1 = mean).
    """

    r: float | typing.Literal["auto"] = "auto"
    r_grid: list[float] = Field(default_factory=lambda: [0.0, 0.5, 0.9, 0.97, 0.99, 0.997, 1.0], min_length=1)
    default_r: float = Field(1.0, ge=0, le=1)  # the fixed fallback: the families' former mean
    selection: SelectionConfig = Field(default_factory=lambda: SelectionConfig(folds_used=1))

    @field_validator("r")
    @classmethod
    def _r_in_range(cls, value: float | str) -> float | str:
        if value != "auto" and not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"r {value}: must be 'auto' or in [0, 1] (0 = max, 1 = mean)")
        return value


class DiscriminatorConfig(StrictModel):
    """Frozen reconstruction encoder + 4-layer fully connected classifier on normal vs simulated anomalies.

    The encoder-decoder, patches, latent perturbation and masks are `simulation` (the same
    settings class as the `simulate` stage). Defaults: see "How the defaults were chosen" in
    asdflow/detectors/discriminator/detector.py (train rows and synthetic data only).
    """

    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    hidden_sizes: list[int] = Field(default_factory=lambda: [256, 128, 64], min_length=3, max_length=3)  # 4 Linear layers
    dropout: float = Field(0.2, ge=0, lt=1)
    freq_bins: int = Field(4, ge=1)  # each encoder map is average-pooled to this many mel bands before time pooling
    rounds: int = Field(4, ge=1)  # fresh simulated anomalies each round
    anomalies_per_normal: int = Field(1, ge=1)  # per round
    epochs_per_round: int = Field(25, ge=1)
    batch_size: int = Field(128, ge=2)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    score: typing.Literal["logit", "probability"] = "logit"  # per patch, pooled over the clip's patches (time_pooling)
    validation_fraction: float = Field(0.0, ge=0, lt=1)  # held-out normal clips: AUC vs their simulated anomalies
    min_train_clips: int = Field(4, ge=2)
    num_threads: int | None = 1  # torch threads while training/scoring (None: torch's default)
    time_pooling: TimePoolingConfig = Field(default_factory=TimePoolingConfig)  # of the patch scores (GWRP r)


class ConditionalAEConfig(StrictModel):
    """Conditional autoencoder scored by k-nearest neighbours in reconstruction-error space.

    Defaults chosen on the valve first-shot TRAIN rows only (held-out train normals vs the
    same clips with simulated anomalies, 4 folds) and on synthetic data, never on test rows:
    benchmarks/conditional_ae_selection.py prints the procedure's table.
    """

    # network: dense Linear+BN+ReLU autoencoder over stacked log-mel frames (the baseline's input);
    # the condition vector is concatenated to the bottleneck (decoder) and, with "both", to the input
    hidden_size: int = 128
    n_hidden_layers: int = 3
    bottleneck_size: int = 16
    condition_on: typing.Literal["decoder", "both"] = "both"
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    max_frames_per_clip: int | None = None  # stacked vectors kept per training clip (None: all)
    # condition: "auto" = attribute one-hots where every training clip has attributes, else pseudo-labels
    conditioning: typing.Literal["auto", "attributes", "pseudo", "domain"] = "auto"
    n_clusters: int = 4  # k of the k-means pseudo-labels on clip-level log-mel means (clipped to the clip count)
    # clip embedding in reconstruction-error space: each mel bin's squared errors pooled over time with
    # GWRP r (0 = max, 1 = mean), by default chosen per machine type from normal clips alone. The fixed
    # fallback r 0 is the former "max" statistic, chosen on held-out valve train rows with simulated
    # anomalies (official 0.78 for max, no log, k 2; 0.76 with log; 0.75 for mean+max; 0.75 for mean;
    # 0.69 for the plain mean error without kNN): the per-bin maximum catches short events, as a valve's
    # open/close transients are.
    time_pooling: TimePoolingConfig = Field(default_factory=lambda: TimePoolingConfig(default_r=0.0))
    log_errors: bool = False  # log of the pooled errors first (lost on the held-out train rows)
    n_neighbors: int = 2  # k of the kNN distance (per domain at most that domain's clip count - 1)
    require_both_domains: bool = True  # a training set without target (or source) clips is an error
    num_threads: int | None = 1  # torch threads while training/scoring (None: torch's default)


class AudDSRConfig(StrictModel):
    """AudDSR: VQ-VAE-2, general + object-specific decoders, anomaly-detection module (focal loss).

    Defaults: the `full` size benchmarked on CPU (~3 min per fit on 52 clips, 1 thread), much
    smaller than DSR's (hidden 128, 4096 codes, hundreds of epochs on a GPU). Chosen on train
    rows / synthetic data only: see src/asdflow/detectors/auddsr/README.md.
    """

    # VQ-VAE-2 over log-mel crops (the model standardises each mel bin with training statistics)
    hidden_channels: int = 32
    embedding_dim: int = 32
    n_codes_top: int = 64
    n_codes_bottom: int = 64
    n_residual: int = 1
    commitment: float = 0.25
    ema_decay: float = 0.95  # EMA codebook update; low because the runs are short
    crop_frames: int = 64  # training crop width in frames (multiple of 16); scoring runs on the whole clip
    # "median": subtract each clip's per-mel median over time first (drops the stationary background level)
    clip_normalisation: typing.Literal["none", "median"] = "median"
    vq_steps: int = 400
    vq_batch_size: int = 16
    vq_learning_rate: float = 2e-3
    # object-specific decoder + anomaly-detection module, trained together on codebook-sampled anomalies
    steps: int = 400
    batch_size: int = 8
    learning_rate: float = 1e-3
    unet_channels: int = 8
    anomaly_probability: float = 0.5  # share of training crops that get an anomaly (the rest: empty mask)
    mask_kinds: list[typing.Literal["perlin", "band_segments"]] = ["perlin", "band_segments"]
    coverage_range: tuple[float, float] = (0.05, 0.4)  # mask coverage drawn uniformly in this range
    strength_range: tuple[float, float] = (0.2, 1.0)  # codebook-sampling strength drawn uniformly in this range
    focal_gamma: float = 2.0
    # clip score from the anomaly map: "mean" = each frame's mean over mel, pooled over time with GWRP
    # (time_pooling; r 1 = the map's mean), or the mean of its top_k_percent cells (no time pooling)
    score: typing.Literal["mean", "top_k_mean"] = "mean"
    top_k_percent: float = 10.0
    min_train_clips: int = 2
    num_threads: int | None = 1  # torch threads while training/scoring (None: torch's default)
    time_pooling: TimePoolingConfig = Field(default_factory=TimePoolingConfig)  # of the map's frames (GWRP r)


class TWFRConfig(StrictModel):
    """TWFR (Guan et al. 2023): GWRP-pooled log-mel per clip, a GMM or a density-normalised k-NN.

    Candidates = every r of `r_grid` with every scorer; `selection` picks one per machine type
    from normal clips alone (or fuses them). `default_r` / `default_scorer`: the fixed default.
    """

    r_grid: list[float] = Field(default_factory=lambda: [0.0, 0.5, 0.9, 0.97, 0.99, 0.997, 1.0], min_length=1)
    scorers: list[typing.Literal["gmm", "knn"]] = Field(default_factory=lambda: ["gmm", "knn"], min_length=1)
    default_r: float = Field(0.5, ge=0, le=1)  # best mean on the generated data (benchmarks/pooling_selection.py)
    default_scorer: typing.Literal["gmm", "knn"] = "knn"
    gmm_components: int = Field(2, ge=1)
    gmm_reg_covar: float = Field(1e-2, gt=0)
    knn_k_density: int = Field(5, ge=1)  # K of the local density rho_j
    knn_metric: typing.Literal["euclidean", "cosine"] = "euclidean"
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    min_train_clips: int = Field(2, ge=2)

    @field_validator("r_grid")
    @classmethod
    def _r_in_range(cls, values: list[float]) -> list[float]:
        if any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"r_grid {values}: every r must be in [0, 1] (0 = max, 1 = mean)")
        return sorted(set(values))
