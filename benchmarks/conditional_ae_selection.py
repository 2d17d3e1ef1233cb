"""How the conditional AE's defaults were chosen: on the valve first-shot TRAIN rows only.

No test row is read. The 52 training normals of ../shared/benchmarks/splits/valve-2023-firstshot.csv
are split into 4 folds, stratified by domain and attribute. Per fold, the detector is fitted
on the other three folds (the real `fit`, one autoencoder variant at a time), and scored on
- the held-out normals (label normal), and
- the same held-out clips with a simulated anomaly added (label anomaly), one of four generic
  kinds not derived from any test clip: a frequency band boosted in a few time segments (the
  AudDSR band x segments shape), short impulsive clicks, an intermittent tone, a timbre change
  (low-pass blend); the added energy is drawn from -25..-5 dB of the clip's.
Every scoring variant (GWRP time pooling r of the per-bin errors, log, k) is scored from the
same per-bin errors, so only the autoencoder variants cost a fit. Scores of the 4 folds are
pooled (they are normalised per domain, so comparable) and the DCASE official score is
computed as on test: AUC source, AUC target (held-out normals of that domain vs all
simulated anomalies), pAUC.
Writes benchmarks/results/conditional_ae_selection.json and prints the ranking.

    nice -n 5 .venv/bin/python benchmarks/conditional_ae_selection.py [--epochs 40]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from scipy import signal
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, real_valve_split, write_results  # noqa: E402

from asdflow.config import load_config  # noqa: E402
from asdflow.data.audio import load_audio  # noqa: E402
from asdflow.data.manifest import Manifest  # noqa: E402
from asdflow.detectors import make_detector  # noqa: E402
from asdflow.detectors.conditional_ae.detector import error_embedding  # noqa: E402
from asdflow.detectors.conditional_ae.knn import DomainKNN  # noqa: E402
from asdflow.detectors.pooling import DEFAULT_R_GRID, describe_r  # noqa: E402
from asdflow.features.logmel import LogMelExtractor, stack_frames  # noqa: E402

ANOMALY_KINDS = ("band_segments", "clicks", "tone", "timbre")
N_FOLDS = 4
SR = 16000


def _scaled(addition: np.ndarray, wave: np.ndarray, level_db: float) -> np.ndarray:
    ratio = np.sqrt(np.mean(wave**2) / max(np.mean(addition**2), 1e-12))
    return addition * ratio * 10 ** (level_db / 20)


def simulate_anomaly(wave: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A generic anomaly added to a normal clip (no knowledge of the test anomalies)."""
    n = len(wave)
    level_db = rng.uniform(-25, -5)
    if kind == "band_segments":
        f, _, spec = signal.stft(wave, SR, nperseg=1024, noverlap=512)
        lo = rng.uniform(100, 5000)
        band = (f >= lo) & (f < lo * rng.uniform(1.3, 2.0))
        frames = np.zeros(spec.shape[1], dtype=bool)
        for _ in range(rng.integers(1, 4)):
            length = int(rng.uniform(0.3, 1.5) * SR / 512)
            start = rng.integers(0, max(1, spec.shape[1] - length))
            frames[start : start + length] = True
        boosted = np.zeros_like(spec)
        boosted[np.ix_(band, frames)] = spec[np.ix_(band, frames)]
        addition = signal.istft(boosted, SR, nperseg=1024, noverlap=512)[1][:n]
        addition = np.pad(addition, (0, n - len(addition)))
        return (wave + _scaled(addition, wave, level_db + 10)).astype(np.float32)
    if kind == "clicks":
        addition = np.zeros(n)
        for _ in range(rng.integers(2, 10)):
            length = int(rng.uniform(0.005, 0.03) * SR)
            start = rng.integers(0, n - length)
            addition[start : start + length] += rng.normal(size=length) * np.exp(-np.arange(length) / (length / 4))
        return (wave + _scaled(addition, wave, level_db)).astype(np.float32)
    if kind == "tone":
        t = np.arange(n) / SR
        gate = np.zeros(n)
        length = int(rng.uniform(0.3, 1.0) * n)
        start = rng.integers(0, n - length + 1)
        gate[start : start + length] = 1.0
        addition = gate * np.sin(2 * np.pi * rng.uniform(300, 6000) * t)
        return (wave + _scaled(addition, wave, level_db)).astype(np.float32)
    if kind == "timbre":
        b, a = signal.butter(2, rng.uniform(500, 4000), fs=SR)
        low = signal.lfilter(b, a, wave)
        mix = np.clip(1.0 + (level_db + 5) / 40, 0.3, 0.9)  # -25 dB -> 0.5 blend, -5 dB -> 0.9
        return ((1 - mix) * wave + mix * low).astype(np.float32)
    raise ValueError(kind)


def folds(records) -> np.ndarray:
    """Fold index per record, stratified by (domain, attributes)."""
    rng = np.random.default_rng(0)
    out = np.zeros(len(records), dtype=int)
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.domain, tuple(sorted(r.attributes.items()))), []).append(i)
    for members in groups.values():
        for j, i in enumerate(rng.permutation(members)):
            out[i] = j % N_FOLDS
    return out


def official(labels, domains, scores) -> dict[str, float]:
    labels, domains, scores = map(np.asarray, (labels, domains, scores))
    anomalies = labels == 1
    out = {}
    for d in ("source", "target"):
        keep = anomalies | ((labels == 0) & (domains == d))
        out[f"auc_{d}"] = roc_auc_score(labels[keep], scores[keep])
    out["pauc"] = roc_auc_score(labels, scores, max_fpr=0.1)
    out["official"] = float(hmean([max(v, 1e-12) for v in out.values()]))
    return out


AE_VARIANTS = {  # run in this order by default (the slowest last)
    "attributes/both": {},
    "domain-only": {"conditioning": "domain"},
    "pseudo-labels": {"conditioning": "pseudo"},
    "attributes/both, 10 epochs": {"epochs": 10},
    "attributes/decoder": {"condition_on": "decoder"},
    "attributes/both, 100 epochs": {"epochs": 100},
}
RS = DEFAULT_R_GRID  # GWRP r of each mel bin's errors over time (0 = max, 1 = mean)
KS = (1, 2, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the variants that do not set their own")
    parser.add_argument("--variants", nargs="+", default=list(AE_VARIANTS))
    args = parser.parse_args()
    started = time.perf_counter()
    train, _ = real_valve_split()  # the test rows are never touched below
    records = train.records
    fold_of = folds(records)
    rng = np.random.default_rng(1)
    waves = [load_audio(r.path, SR) for r in records]
    kinds = [ANOMALY_KINDS[i % len(ANOMALY_KINDS)] for i in rng.permutation(len(records))]
    anomalous = [simulate_anomaly(w, k, rng) for w, k in zip(waves, kinds)]
    base = load_config(profile="full", overrides={"progress": False, "detector": {"family": "conditional_ae"}})
    base.detector.conditional_ae.time_pooling.r = 0.0  # the fits' own r does not matter: every r is scored below
    extractor = LogMelExtractor(base.features)
    normal_mels = extractor.batch(waves)
    anomaly_mels = extractor.batch(anomalous)
    print(f"{len(records)} training normals, {N_FOLDS} folds, one simulated anomaly per clip ({', '.join(ANOMALY_KINDS)})")

    rows = []
    for name in args.variants:
        overrides = {"epochs": args.epochs, **AE_VARIANTS[name]}
        cfg = base.model_copy(deep=True)
        cfg.detector.conditional_ae = cfg.detector.conditional_ae.model_copy(update=overrides)
        # per fold: per-bin errors of the bank clips and of the held-out normal/anomalous clips
        pooled: dict[tuple, list] = {}
        for fold in range(N_FOLDS):
            fit_records = [r for r, f in zip(records, fold_of) if f != fold]
            detector = make_detector(cfg.detector, cfg.features, seed=0)
            detector.fit(Manifest(root=train.root, records=fit_records), progress=False)
            space = detector.space

            def errors(mel, record):
                key = space.candidates(record, mel.mean(axis=1))[0]
                return detector.per_bin_errors(stack_frames(mel, cfg.features.n_frames), space.vector(key))

            bank = [(r.domain, errors(normal_mels[i], r)) for i, r in enumerate(records) if fold_of[i] != fold]
            held = [i for i in range(len(records)) if fold_of[i] == fold]
            probes = [(records[i].domain, 0, errors(normal_mels[i], records[i])) for i in held]
            probes += [(records[i].domain, 1, errors(anomaly_mels[i], records[i])) for i in held]
            for r, log, k in itertools.product(RS, (True, False), KS):
                raw_bank = np.stack([error_embedding(e, r, log) for _, e in bank])
                mean, std = raw_bank.mean(0), raw_bank.std(0) + 1e-6
                banks = {d: (raw_bank[[b[0] == d for b in bank]] - mean) / std for d in ("source", "target")}
                knn = DomainKNN(banks, k)
                emb = (np.stack([error_embedding(e, r, log) for _, _, e in probes]) - mean) / std
                entry = pooled.setdefault((r, log, k), [[], [], []])
                entry[0] += [p[1] for p in probes]
                entry[1] += [p[0] for p in probes]
                entry[2] += list(knn.score(emb))
            entry = pooled.setdefault(("mse (no kNN)",), [[], [], []])
            entry[0] += [p[1] for p in probes]
            entry[1] += [p[0] for p in probes]
            entry[2] += [float(e.mean()) for _, _, e in probes]
        for key, (labels, domains, scores) in pooled.items():
            row = {"ae_variant": name}
            if len(key) == 3:
                row.update(pooling=describe_r(key[0]), log=key[1], k=key[2])
            else:
                row.update(pooling=key[0], log="", k="")
            row.update(official(labels, domains, scores))
            rows.append(row)
        print(f"  {name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
        rows.sort(key=lambda r: -r["official"])
        path = write_results(  # after every variant: a long run on a loaded machine keeps what it measured
            "conditional_ae_selection",
            {"procedure": __doc__, "n_train": len(records), "folds": N_FOLDS, "anomaly_kinds": ANOMALY_KINDS,
             "epochs": args.epochs, "variants_done": args.variants[: args.variants.index(name) + 1],
             "rows": rows, "seconds": time.perf_counter() - started},
        )

    columns = ["ae_variant", "pooling", "log", "k", "auc_source", "auc_target", "pauc", "official"]
    print_table(rows[:25], columns)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
