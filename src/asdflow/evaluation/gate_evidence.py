"""What the gate judges on: labelled anomalies when the data has them, simulated ones when not.

A plant rarely has labelled faults. When the evaluation split of a machine type holds
labelled anomalies the gate scores them (`labelled`, the official DCASE score). When it
does not, it scores held-out normal clips that no model trained on, plus anomalies
simulated from those very clips with the label-free mechanism the detectors choose their
settings with (`asdflow.detectors.selection`, `asdflow.simulation.waveform_anomalies`):
`simulated`. The held-out normals are the labelled normal test clips when there are
enough of them; otherwise a fixed share of the training normals, picked by a hash of the
file name, which the train stage leaves out (`plan_evidence` decides for both stages, so
they agree, and the hash keeps the same clips out from one data version to the next).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from asdflow.config import GateConfig
from asdflow.data.manifest import ClipRecord, Manifest

Evidence = Literal["labelled", "simulated"]
SIMULATED_PREFIX = "simulated_"


@dataclass
class EvidencePlan:
    """The clips the gate scores for one machine type, and the training clips it keeps from training."""

    evidence: Evidence
    normals: list[ClipRecord]  # labelled normals (labelled) or held-out normals (simulated)
    anomalies: list[ClipRecord]  # labelled anomalies; empty for simulated (made at gate time)
    reserved_from_training: set[str] = field(default_factory=set)  # train clip names the detector must not see
    source: str = ""  # where the normals come from, for the decision record

    @property
    def records(self) -> list[ClipRecord]:
        return self.normals + self.anomalies


def reserved_for_gate(name: str, fraction: float) -> bool:
    """Whether a training clip is held out for the gate: a stable hash of its file name, so the
    same clips stay out whatever other clips the dataset gains or loses."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def plan_evidence(manifest: Manifest, machine_type: str, gate: GateConfig) -> EvidencePlan:
    """The gate's evidence for `machine_type` in `manifest` (its test and train clips)."""
    clips = [r for r in manifest.records if r.machine_type == machine_type]
    test = [r for r in clips if r.split == "test" and r.is_labelled]
    normals = [r for r in test if r.label == "normal"]
    anomalies = [r for r in test if r.label == "anomaly"]
    if gate.evidence != "simulated" and anomalies and normals:
        return EvidencePlan("labelled", normals, anomalies, source="labelled test clips")
    if gate.evidence == "labelled":
        return EvidencePlan("labelled", normals, anomalies, source="labelled test clips (required by gate.evidence)")
    if len(normals) >= gate.min_heldout_normals:
        return EvidencePlan("simulated", normals, [], source="normal test clips (no labelled anomalies)")
    train = [r for r in clips if r.split == "train" and r.label == "normal" and not r.synthetic]
    reserved = [r for r in train if reserved_for_gate(r.name, gate.holdout_fraction)]
    if len(reserved) < gate.min_heldout_normals:  # a small dataset: the first ones by hash order
        ranked = sorted(train, key=lambda r: hashlib.sha256(r.name.encode()).digest())
        reserved = ranked[: min(gate.min_heldout_normals, len(train) // 2)]
    return EvidencePlan(
        "simulated", sorted(reserved, key=lambda r: r.name), [], {r.name for r in reserved},
        source=f"{len(reserved)} training normals held out of training (gate.holdout_fraction "
               f"{gate.holdout_fraction:g}; no labelled test normals)",
    )


def simulated_anomalies(
    normals: list[ClipRecord], waveforms: list[np.ndarray], sample_rate: int, gate: GateConfig
) -> tuple[list[ClipRecord], list[np.ndarray]]:
    """One anomaly of each configured kind per held-out normal (at most `gate.max_simulated_from` of
    them), as records that keep the clip's domain, section and attributes (what a conditioned
    family reads) and a name saying what they are."""
    from asdflow.simulation.waveform_anomalies import simulate_many

    chosen = list(range(len(normals)))[: gate.max_simulated_from]
    made, owners, kinds = simulate_many([waveforms[i] for i in chosen], sample_rate, gate.simulated_kinds,
                                        tuple(gate.simulated_level_db), gate.seed, ids=chosen)
    records = []
    for owner, kind in zip(owners, kinds):
        normal = normals[chosen[int(owner)]]
        records.append(normal.model_copy(update={
            "name": f"{SIMULATED_PREFIX}{kind}_{normal.name}", "label": "anomaly", "split": "test",
        }))
    return records, made


class SimulatedScore:
    """AUC per domain and pAUC of normals against their simulated anomalies, as the official score
    is computed (`asdflow.evaluation.metrics`): AUC(d) uses the normals of domain d and every
    anomaly, pAUC all clips; the official score is the harmonic mean of those present (a
    one-domain plant has no target AUC)."""

    def __init__(self, normals: list[ClipRecord], normal_scores: np.ndarray, anomaly_scores: np.ndarray,
                 max_fpr: float):
        from scipy.stats import hmean
        from sklearn.metrics import roc_auc_score

        def auc(neg: np.ndarray, pos: np.ndarray, **kw) -> float:
            if len(neg) == 0 or len(pos) == 0 or not np.all(np.isfinite(np.r_[neg, pos])):
                return math.nan
            return float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos], **kw))

        def of_domain(records: list[ClipRecord], scores: np.ndarray, domain: str) -> np.ndarray:
            return np.asarray([s for r, s in zip(records, scores) if (r.domain or "source") == domain])

        anomaly_scores = np.asarray(anomaly_scores)
        self.auc_source = auc(of_domain(normals, normal_scores, "source"), anomaly_scores)
        self.auc_target = auc(of_domain(normals, normal_scores, "target"), anomaly_scores)
        self.pauc = auc(np.asarray(normal_scores), np.asarray(anomaly_scores), max_fpr=max_fpr)
        present = [v for v in (self.auc_source, self.auc_target, self.pauc) if math.isfinite(v)]
        self.official = float(hmean(np.maximum(present, 1e-12))) if present and math.isfinite(self.pauc) else math.nan
