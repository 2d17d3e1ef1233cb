"""The two clip-vector scorers of the TWFR family: a diagonal GMM and a density-normalised k-NN.

Both see one pooled log-mel vector per clip (n_mels values) and are fitted on a
few dozen to a few thousand normal clips, so neither needs more than numpy and
scikit-learn, and both fit in milliseconds.

- `GMMScorer` (Guan et al. 2023): a Gaussian mixture on the standardised vectors;
  with ~50 clips a full covariance in 128 dimensions is singular, so the
  covariance is diagonal with a floor (`reg_covar`). Score = the negative of the
  largest component's weighted log-likelihood, as the authors score.
- `DensityKNN` (Wilkinghoff et al. 2025, local density normalisation):
  score(x) = min_j d(x, b_j) / rho_j, with rho_j the mean distance of bank entry j
  to its K nearest other entries. A sparse domain (ten target clips beside a
  thousand source clips) has large rho, so its clips are not penalised for being
  few: source and target are handled without domain labels at test time.
"""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

from asdflow.errors import DetectorError

MIN_STD = 1e-6


class Standardiser:
    """Per-dimension z-scoring with training statistics (a constant dimension keeps scale 1)."""

    def __init__(self, data: np.ndarray):
        self.mean = data.mean(axis=0)
        std = data.std(axis=0)
        self.std = np.where(std > MIN_STD, std, 1.0)

    def __call__(self, data: np.ndarray) -> np.ndarray:
        return (np.asarray(data, dtype=np.float64) - self.mean) / self.std

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "Standardiser":
        obj = cls.__new__(cls)
        obj.mean, obj.std = np.asarray(state["mean"]), np.asarray(state["std"])
        return obj


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), MIN_STD)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), MIN_STD)
        return np.clip(1.0 - an @ bn.T, 0.0, 2.0)
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


class GMMScorer:
    kind = "gmm"

    def __init__(self, n_components: int = 2, reg_covar: float = 1e-2, seed: int = 0):
        self.n_components = n_components
        self.reg_covar = reg_covar
        self.seed = seed

    def fit(self, vectors: np.ndarray) -> "GMMScorer":
        vectors = np.asarray(vectors, dtype=np.float64)
        if len(vectors) < 2:
            raise DetectorError(f"the GMM scorer needs at least 2 training clips, got {len(vectors)}")
        self.scale = Standardiser(vectors)
        k = max(1, min(self.n_components, len(vectors) // 2))
        gmm = GaussianMixture(k, covariance_type="diag", reg_covar=self.reg_covar, random_state=self.seed,
                              n_init=1, max_iter=200)
        gmm.fit(self.scale(vectors))
        self.weights, self.means, self.variances = gmm.weights_, gmm.means_, gmm.covariances_
        return self

    def score(self, vectors: np.ndarray) -> np.ndarray:
        x = self.scale(vectors)
        # log(w_k N(x | mu_k, diag var_k)) per component; the score is minus the best one
        log_det = np.log(self.variances).sum(axis=1)
        mahal = (((x[:, None, :] - self.means[None]) ** 2) / self.variances[None]).sum(axis=2)
        log_prob = np.log(self.weights)[None] - 0.5 * (x.shape[1] * np.log(2 * np.pi) + log_det[None] + mahal)
        return -log_prob.max(axis=1)

    def state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "means": self.means, "variances": self.variances, **_prefixed(self.scale)}

    def load(self, state: dict[str, np.ndarray]) -> "GMMScorer":
        self.weights, self.means, self.variances = state["weights"], state["means"], state["variances"]
        self.scale = Standardiser.from_state({"mean": state["scale_mean"], "std": state["scale_std"]})
        return self


class DensityKNN:
    kind = "knn"

    def __init__(self, k_density: int = 5, metric: str = "euclidean"):
        if metric not in ("euclidean", "cosine"):
            raise DetectorError(f"unknown k-NN metric {metric!r}: euclidean or cosine")
        self.k_density = k_density
        self.metric = metric

    def fit(self, vectors: np.ndarray) -> "DensityKNN":
        vectors = np.asarray(vectors, dtype=np.float64)
        if len(vectors) < 1:
            raise DetectorError("the k-NN scorer needs at least 1 training clip, got none")
        self.scale = Standardiser(vectors)
        self.bank = self.scale(vectors)
        if len(self.bank) == 1:  # one clip has no neighbours to measure its density by: plain distance
            self.rho = np.ones(1)
            return self
        distances = pairwise_distances(self.bank, self.bank, self.metric)
        np.fill_diagonal(distances, np.inf)
        k = min(self.k_density, len(self.bank) - 1)
        rho = np.sort(distances, axis=1)[:, :k].mean(axis=1)
        self.rho = np.maximum(rho, max(float(np.median(rho)) * 1e-3, MIN_STD))  # duplicates: no division by 0
        return self

    def score(self, vectors: np.ndarray) -> np.ndarray:
        return (pairwise_distances(self.scale(vectors), self.bank, self.metric) / self.rho[None]).min(axis=1)

    def state(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank, "rho": self.rho, **_prefixed(self.scale)}

    def load(self, state: dict[str, np.ndarray]) -> "DensityKNN":
        self.bank, self.rho = state["bank"], state["rho"]
        self.scale = Standardiser.from_state({"mean": state["scale_mean"], "std": state["scale_std"]})
        return self


def _prefixed(scale: Standardiser) -> dict[str, np.ndarray]:
    return {f"scale_{k}": v for k, v in scale.state().items()}
