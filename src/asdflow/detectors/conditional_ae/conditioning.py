"""The condition vector of a clip: its domain plus attribute one-hots, or a pseudo-label.

Modes:
- "attributes": one-hot of each attribute key's value (values seen in training; an unseen
  value gives zeros for that key), after a domain one-hot;
- "pseudo": when attributes are missing, k-means on clip-level log-mel means (the mean over
  time of each mel bin) of the training clips; a clip's pseudo-label is its nearest centroid,
  computed from the clip itself, so it needs no file name;
- "domain": the domain one-hot alone.

A condition is named by a key (domain, label) with label e.g. "pat=01", "cluster=2" or "".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from asdflow.data.manifest import ClipRecord
from asdflow.errors import DetectorError

DOMAINS = ("source", "target")
Mode = Literal["attributes", "pseudo", "domain"]
ConditionKey = tuple[str, str]


def choose_mode(requested: str, records: list[ClipRecord]) -> Mode:
    """"auto" -> attributes where every training clip has some, else pseudo-labels."""
    if requested == "auto":
        return "attributes" if records and all(r.attributes for r in records) else "pseudo"
    if requested == "attributes":
        missing = [r.name for r in records if not r.attributes]
        if missing:
            raise DetectorError(
                f"conditioning 'attributes': {len(missing)} training clip(s) have no attributes "
                f"(e.g. {missing[0]}); use conditioning 'auto' or 'pseudo'"
            )
    return requested  # type: ignore[return-value]


@dataclass
class ConditionSpace:
    mode: Mode
    attribute_values: dict[str, list[str]] = field(default_factory=dict)  # key -> sorted values seen in training
    centroids: np.ndarray | None = None  # (k, n_mels) k-means centres of clip-level log-mel means
    training_keys: list[ConditionKey] = field(default_factory=list)  # the conditions seen in training

    @property
    def dim(self) -> int:
        extra = 0
        if self.mode == "attributes":
            extra = sum(len(v) for v in self.attribute_values.values())
        elif self.mode == "pseudo" and self.centroids is not None:
            extra = len(self.centroids)
        return len(DOMAINS) + extra

    # -- fitting ------------------------------------------------------------
    @classmethod
    def fit(
        cls, mode: Mode, records: list[ClipRecord], clip_means: np.ndarray, n_clusters: int, seed: int
    ) -> tuple["ConditionSpace", list[ConditionKey]]:
        """The space and each training clip's condition key."""
        space = cls(mode=mode)
        if mode == "attributes":
            names = sorted({k for r in records for k in r.attributes})
            space.attribute_values = {k: sorted({r.attributes[k] for r in records if k in r.attributes}) for k in names}
        elif mode == "pseudo":
            from sklearn.cluster import KMeans

            k = max(1, min(n_clusters, len(records)))
            space.centroids = KMeans(k, n_init=10, random_state=seed).fit(clip_means).cluster_centers_.astype(np.float32)
        keys = [space.key(r.domain or "source", r.attributes, m) for r, m in zip(records, clip_means)]
        space.training_keys = sorted(set(keys))
        return space, keys

    # -- keys and vectors ---------------------------------------------------
    def pseudo_label(self, clip_mean: np.ndarray) -> int:
        assert self.centroids is not None
        return int(np.argmin(((self.centroids - clip_mean[None, :]) ** 2).sum(axis=1)))

    def key(self, domain: str, attributes: dict[str, str] | None, clip_mean: np.ndarray) -> ConditionKey:
        if self.mode == "attributes":
            attributes = attributes or {}
            return domain, ",".join(f"{k}={attributes.get(k, '')}" for k in self.attribute_values)
        if self.mode == "pseudo":
            return domain, f"cluster={self.pseudo_label(clip_mean)}"
        return domain, ""

    def vector(self, key: ConditionKey) -> np.ndarray:
        domain, label = key
        out = np.zeros(self.dim, dtype=np.float32)
        out[DOMAINS.index(domain)] = 1.0
        offset = len(DOMAINS)
        if self.mode == "attributes":
            given = dict(part.split("=", 1) for part in label.split(",") if part)
            for name, values in self.attribute_values.items():
                if given.get(name) in values:  # an unseen value leaves its block at zero
                    out[offset + values.index(given[name])] = 1.0
                offset += len(values)
        elif self.mode == "pseudo":
            out[offset + int(label.split("=", 1)[1])] = 1.0
        return out

    def candidates(self, record: ClipRecord | None, clip_mean: np.ndarray) -> list[ConditionKey]:
        """The conditions to score a clip under (its score is the minimum over them).

        Known domain and a condition seen in training: that one. Otherwise (no record at
        serving time, no domain, or attribute values never seen in training) every training
        condition of the clip's domain, or of both domains when the domain is unknown.
        """
        domain = record.domain if record is not None else None
        if domain is not None:
            key = self.key(domain, record.attributes if record else None, clip_mean)
            if key in self.training_keys or self.mode != "attributes":
                return [key]
            same_domain = [k for k in self.training_keys if k[0] == domain]
            return same_domain or list(self.training_keys)
        if self.mode == "attributes":
            return list(self.training_keys)
        return [self.key(d, None, clip_mean) for d in DOMAINS]

    # -- persistence --------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "attribute_values": self.attribute_values,
            "centroids": None if self.centroids is None else self.centroids.tolist(),
            "training_keys": [list(k) for k in self.training_keys],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ConditionSpace":
        centroids = data.get("centroids")
        return cls(
            mode=data["mode"],
            attribute_values={k: list(v) for k, v in data.get("attribute_values", {}).items()},
            centroids=None if centroids is None else np.asarray(centroids, dtype=np.float32),
            training_keys=[(str(k[0]), str(k[1])) for k in data.get("training_keys", [])],
        )
