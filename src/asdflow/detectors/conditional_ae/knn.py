"""k-nearest-neighbour scores in reconstruction-error space, per domain, normalised per domain.

Each training domain keeps a bank of its clips' error embeddings. A clip's distance to a
domain is the mean Euclidean distance to its k nearest bank entries; it is normalised by the
mean and std of the leave-one-out distances of that domain's own training clips (so a
10-clip target domain and a 1000-clip source domain speak on one scale), and the clip's
score is the smaller normalised distance: a target clip is judged against target normals.
"""

from __future__ import annotations

import numpy as np

from asdflow.errors import DetectorError

MIN_STD = 1e-6
STD_FLOOR = 0.1  # the normalising std is at least this fraction of the mean leave-one-out distance


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def _mean_of_k_smallest(distances: np.ndarray, k: int) -> np.ndarray:
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


class DomainKNN:
    def __init__(self, banks: dict[str, np.ndarray], n_neighbors: int):
        if n_neighbors < 1:
            raise DetectorError(f"kNN needs n_neighbors >= 1, got {n_neighbors}")
        self.banks = {d: np.asarray(b, dtype=np.float64) for d, b in banks.items()}
        self.n_neighbors = n_neighbors
        self.k: dict[str, int] = {}
        self.mean: dict[str, float] = {}
        self.std: dict[str, float] = {}
        for domain, bank in self.banks.items():
            if len(bank) < 2:
                raise DetectorError(
                    f"domain {domain!r} has {len(bank)} training clip(s): the kNN score with leave-one-out "
                    "normalisation needs at least 2"
                )
            if not np.all(np.isfinite(bank)):
                raise DetectorError(f"domain {domain!r}: non-finite reconstruction-error embeddings")
            k = min(n_neighbors, len(bank) - 1)  # leave-one-out leaves len - 1 neighbours
            distances = _pairwise(bank, bank)
            np.fill_diagonal(distances, np.inf)
            loo = _mean_of_k_smallest(distances, k)
            self.k[domain] = k
            self.mean[domain] = float(loo.mean())
            # floor: a few clips give an unreliable std (two clips give two equal distances: std 0)
            self.std[domain] = float(max(loo.std(), STD_FLOOR * loo.mean(), MIN_STD))

    def domain_scores(self, embeddings: np.ndarray, exclude: dict[str, list[int | None]] | None = None) -> dict[str, np.ndarray]:
        """domain -> normalised kNN distance of each embedding; `exclude[d][i]` leaves bank row out (training)."""
        out = {}
        for domain, bank in self.banks.items():
            distances = _pairwise(np.asarray(embeddings, dtype=np.float64), bank)
            if exclude and domain in exclude:
                for row, col in enumerate(exclude[domain]):
                    if col is not None:
                        distances[row, col] = np.inf
            raw = _mean_of_k_smallest(distances, self.k[domain])
            out[domain] = (raw - self.mean[domain]) / self.std[domain]
        return out

    def score(self, embeddings: np.ndarray, exclude: dict[str, list[int | None]] | None = None) -> np.ndarray:
        """The smaller of the per-domain normalised distances, per embedding."""
        return np.minimum.reduce(list(self.domain_scores(embeddings, exclude).values()))

    # -- persistence --------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {f"bank_{d}": b for d, b in self.banks.items()}

    @classmethod
    def from_arrays(cls, arrays, n_neighbors: int) -> "DomainKNN":
        banks = {name[len("bank_"):]: arrays[name] for name in arrays.files if name.startswith("bank_")}
        return cls(banks, n_neighbors)
