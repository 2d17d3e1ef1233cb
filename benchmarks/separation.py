"""Separation benchmark: Conv-TasNet vs a Wiener baseline, the detector with/without separation, speed.

(a) SI-SNR improvement (dB) on held-out mixtures of three kinds, at -5, 0, +5 dB:
    - synthetic: held-out synthetic supplemental machine clips + held-out synthetic noise clips;
    - real: REAL valve clips (DCASE 2023, the first-shot split's *test* normals, never trained
      on) + REAL noise segments the model never heard, from noise sources it trained on
      (the last 6 s of the training NOISEX files, held-out MIMII id00/id02 segments);
    - unseen noise: the same valve clips + noise sources absent from training altogether
      (NOISEX factory2 and volvo, MIMII id04/id06 segments).
    Baseline: the Wiener gain of asdflow.separation.classical, its noise PSD measured on a
    *different* noise-only stretch of the same noise source at the same level as in the
    mixture (an oracle-level noise estimate: a strong classical baseline).
(b) The DCASE baseline autoencoder (MSE score), official score, without separation, on
    separated clips (`use: separated`) and on original + separated training clips (`use:
    both`): a small synthetic set with extra background noise added, and the real valve
    first-shot split.
(c) Speed on this machine: training steps/s and denoising x real time, per profile (tiny, demo).

The benchmark separator trains on a mix of synthetic supplemental clips and real valve clips
(the first-shot split's *train* rows) with real noise (NOISEX first 14 s, MIMII id00/id02
training segments), 1 s segments, one torch thread. It checkpoints under
benchmarks/results/separation_model/ (git-ignored): a killed run resumes, `--reuse` skips
training when the separator exists.

    nice -n 5 .venv/bin/python benchmarks/separation.py [--steps 8000] [--reuse] [--quick] [--train-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, SHARED_REAL_DATA, print_table, write_results  # noqa: E402

from asdflow.config import SeparationConfig, SynthConfig, load_config  # noqa: E402
from asdflow.data.audio import load_audio, write_audio  # noqa: E402
from asdflow.data.dcase_reader import build_manifest  # noqa: E402
from asdflow.data.manifest import Manifest  # noqa: E402
from asdflow.data.synth import synthesize_dataset  # noqa: E402
from asdflow.separation.classical import fit_wiener  # noqa: E402
from asdflow.separation.denoise import separate_waveform  # noqa: E402
from asdflow.separation.metrics import si_snr_improvement  # noqa: E402
from asdflow.separation.mixtures import MixtureSource, fit_length, mix_at_snr  # noqa: E402
from asdflow.separation.model import load_separator  # noqa: E402
from asdflow.separation.train import train_on_source  # noqa: E402

SR = 16000
NOISE = SHARED_REAL_DATA / "noise"
VALVE = SHARED_REAL_DATA / "dcase2023t2_dev"
SPLIT = SHARED_REAL_DATA / ".." / ".." / "benchmarks" / "splits" / "valve-2023-firstshot.csv"
MODEL_DIR = RESULTS_DIR / "separation_model"
WORK_DIR = RESULTS_DIR / "separation_work"
NOISEX_TRAIN = ("factory1", "buccaneer1", "m109", "babble")  # first 14 s trained on, last 6 s held out
NOISEX_UNSEEN = ("factory2", "volvo")
MIMII_UNSEEN_IDS = ("id04", "id06")
MIMII_HELD_OUT_PER_ID = 4  # of id00 and id02: the last files (sorted) are held out
NOISEX_TRAIN_SECONDS = 14.0
SNRS = (-5.0, 0.0, 5.0)


def bench_config(steps: int, quick: bool) -> SeparationConfig:
    """Between the tiny and demo profiles' sizes in spirit: demo's network, 1 s segments, a wider SNR range."""
    if quick:
        return SeparationConfig(N=16, L=16, B=8, H=16, P=3, X=2, R=1, segment_seconds=0.5, batch_size=2,
                                steps=steps, checkpoint_every=max(1, steps), chunk_seconds=1.0, snr_db=(-7.5, 7.5))
    return SeparationConfig(N=64, L=16, B=32, H=64, P=3, X=4, R=2, segment_seconds=1.0, batch_size=4,
                            steps=steps, checkpoint_every=250, chunk_seconds=2.0, snr_db=(-7.5, 7.5),
                            learning_rate=1e-3, grad_clip=5.0, seed=0)


# -- data pools ---------------------------------------------------------------------------


@dataclass
class NoisePools:
    train: list[np.ndarray]
    held_out: list[np.ndarray]  # sources trained on, stretches never heard
    unseen: list[np.ndarray]  # sources never heard
    names: dict[str, list[str]]


def real_noise_pools() -> NoisePools:
    noisex = {p.stem: load_audio(p, target_sr=SR) for p in sorted((NOISE / "noisex92_excerpts").glob("*.wav"))}
    cut = int(NOISEX_TRAIN_SECONDS * SR)
    train = [noisex[n][:cut] for n in NOISEX_TRAIN]
    held = [noisex[n][cut:] for n in NOISEX_TRAIN]
    unseen = [noisex[n] for n in NOISEX_UNSEEN]
    names = {"train": [f"noisex/{n}[0:14s]" for n in NOISEX_TRAIN],
             "held_out": [f"noisex/{n}[14s:]" for n in NOISEX_TRAIN], "unseen": [f"noisex/{n}" for n in NOISEX_UNSEEN]}
    mimii = sorted((NOISE / "mimii_valve_background_segments").glob("*.wav"))
    for machine_id in ("id00", "id02"):
        files = [p for p in mimii if p.name.startswith(machine_id)]
        for p in files[:-MIMII_HELD_OUT_PER_ID]:
            train.append(load_audio(p, target_sr=SR))
            names["train"].append(f"mimii/{p.name}")
        for p in files[-MIMII_HELD_OUT_PER_ID:]:
            held.append(load_audio(p, target_sr=SR))
            names["held_out"].append(f"mimii/{p.name}")
    for p in mimii:
        if p.name.startswith(MIMII_UNSEEN_IDS):
            unseen.append(load_audio(p, target_sr=SR))
            names["unseen"].append(f"mimii/{p.name}")
    return NoisePools(train, held, unseen, names)


def valve_split() -> tuple[list[Path], list[Path]]:
    """(train clips, held-out normal test clips) of the valve first-shot split."""
    split = pd.read_csv(SPLIT)
    train = [VALVE / f for f in split.loc[split.role == "train", "file"]]
    test = [VALVE / f for f in split.loc[split.role == "test", "file"] if "_normal_" in f]
    return train, test


def synthetic_supplemental(root: Path, quick: bool) -> dict[str, dict[str, list[np.ndarray]]]:
    """Synthetic supplemental clips of fan and pump: {"train"|"test": {"clean_<mt>"|"noise_<mt>": [...]}}.

    Two generator seeds: the held-out clips come from another seed than the training ones.
    """
    pools: dict[str, dict[str, list[np.ndarray]]] = {"train": {}, "test": {}}
    for part, seed, n in (("train", 11, 4 if quick else 16), ("test", 12, 2 if quick else 6)):
        config = SynthConfig(machine_types=["fan", "pump"], duration=2.0 if quick else 4.0, n_train_source=0,
                             n_train_target=0, n_test_per_condition=0, n_supplemental_clean=n,
                             n_supplemental_noise=n, seed=seed)
        out = root / f"synth_supplemental_{part}"
        if not out.exists():
            synthesize_dataset(config, out, progress=False)
        manifest = build_manifest(out, progress=False, compute_md5=False)
        for record in manifest.records:
            key = f"{record.supplemental_kind}_{record.machine_type}"
            pools[part].setdefault(key, []).append(load_audio(record.path, target_sr=SR))
    return pools


def training_source(config: SeparationConfig, synth: dict, noise: NoisePools, valve_train: list[Path]) -> MixtureSource:
    """Pools keyed like machine types (each drawn equally often): two synthetic, two real-valve ones."""
    valve = [load_audio(p, target_sr=SR) for p in valve_train]
    clean = {"synth-fan": synth["train"]["clean_fan"], "synth-pump": synth["train"]["clean_pump"],
             "valve-a": valve, "valve-b": valve}
    noises = {"synth-fan": synth["train"]["noise_fan"] + noise.train,
              "synth-pump": synth["train"]["noise_pump"] + noise.train,
              "valve-a": noise.train, "valve-b": noise.train + synth["train"]["noise_fan"]}
    return MixtureSource(clean=clean, noise=noises, config=config)


def train_or_reuse(config: SeparationConfig, source: MixtureSource, out: Path, reuse: bool, progress: bool) -> dict:
    separator = out / "separator"
    if reuse and (separator / "separator.json").is_file():
        info = json.loads((separator / "separator.json").read_text())
        if info.get("steps") == config.steps:
            print(f"reusing the separator in {separator} ({info['steps']} steps)")
            return info.get("training", {})
    torch.set_num_threads(1)
    result = train_on_source(source, config, out, progress=progress, extra={"purpose": "benchmarks/separation.py"})
    losses = result.losses
    training = {"steps": result.steps, "resumed_from": result.resumed_from, "seconds_this_call": result.seconds,
                "steps_per_second_this_call": result.steps_per_second,
                "loss_first_100": float(np.mean(losses[:100])) if losses else None,
                "loss_last_100": float(np.mean(losses[-100:])) if losses else None}
    info = json.loads((separator / "separator.json").read_text())
    info["training"] = training
    (separator / "separator.json").write_text(json.dumps(info, indent=2))
    return training


# -- (a) SI-SNR improvement ------------------------------------------------------------------


def pool_wiener_psd(noise_clips: list[np.ndarray], n_fft: int = 512) -> np.ndarray:
    """The mean noise spectrum over a pool of noise-only clips (what a deployment knows without the noise type)."""
    from asdflow.separation.classical import noise_psd

    return noise_psd(noise_clips, n_fft, n_fft // 4)


def si_snri_table(model_dir: Path, synth: dict, noise: NoisePools, valve_test: list[Path], quick: bool) -> list[dict]:
    """Mean SI-SNRi per kind and SNR: Conv-TasNet, Wiener (oracle noise stretch), Wiener (pool PSD, level-matched)."""
    from asdflow.separation.classical import WienerDenoiser
    from asdflow.separation.evaluation import make_eval_mixtures

    model, info = load_separator(model_dir / "separator")
    chunk = float(info["config"]["chunk_seconds"])
    n, length = (2, SR) if quick else (12, 4 * SR)
    valve = [load_audio(p, target_sr=SR) for p in (valve_test[:3] if quick else valve_test)]
    kinds = {
        "synthetic machine + synthetic noise": (synth["test"]["clean_fan"] + synth["test"]["clean_pump"],
                                                synth["test"]["noise_fan"] + synth["test"]["noise_pump"]),
        "real valve + real noise (held-out stretches)": (valve, noise.held_out),
        "real valve + unseen real noise": (valve, noise.unseen),
    }
    pool = pool_wiener_psd(noise.train + synth["train"]["noise_fan"] + synth["train"]["noise_pump"])
    rows = []
    torch.set_num_threads(1)
    for kind, (clean, noises) in kinds.items():
        mixtures = make_eval_mixtures(clean, noises, SNRS, n, length, seed=7)
        for snr in SNRS:
            chosen = [m for m in mixtures if m.snr_db == snr]
            sep, oracle, pooled = [], [], []
            for m in chosen:
                with torch.inference_mode():
                    estimate = separate_waveform(model, m.mixture, SR, chunk)
                sep.append(si_snr_improvement(estimate, m.mixture, m.machine))
                oracle.append(si_snr_improvement(fit_wiener([m.noise_estimate_clip])(m.mixture), m.mixture, m.machine))
                # the pool's spectral shape at the mixture's true noise level (a level-oracle, type-blind estimate)
                level = np.mean((m.mixture - m.machine).astype(np.float64) ** 2)
                shaped = pool * level / _psd_power(pool)
                pooled.append(si_snr_improvement(WienerDenoiser(shaped)(m.mixture), m.mixture, m.machine))
            rows.append({"mixtures": kind, "snr_db": snr, "n": len(chosen),
                         "convtasnet_si_snri_db": float(np.mean(sep)),
                         "wiener_oracle_si_snri_db": float(np.mean(oracle)),
                         "wiener_pool_si_snri_db": float(np.mean(pooled)),
                         "convtasnet_minus_oracle_wiener_db": float(np.mean(sep) - np.mean(oracle))})
    return rows


def _psd_power(psd: np.ndarray, n_fft: int = 512) -> float:
    """The signal power a one-sided STFT power spectrum (Hann window, as noise_psd computes it) stands for."""
    window = np.hanning(n_fft + 1)[:-1]
    two_sided = psd[0] + psd[-1] + 2 * psd[1:-1].sum()
    return float(two_sided / (n_fft * np.sum(window**2)))


# -- (b) the detector with and without separation --------------------------------------------


def _add_noise(dataset: Manifest, noise: list[np.ndarray], out: Path, snr_db: float, seed: int) -> Manifest:
    """Every train/test clip with one of `noise` added at `snr_db` (relative to the clip), same layout and names."""
    rng = np.random.default_rng(seed)
    root = Path(dataset.root)
    records = []
    for record in dataset.records:
        if record.split not in ("train", "test"):
            continue
        wav = load_audio(record.path, target_sr=SR)
        piece = fit_length(noise[int(rng.integers(len(noise)))], len(wav))
        start = int(rng.integers(0, len(piece) - len(wav) + 1))
        mixture, _, _ = mix_at_snr(wav, piece[start : start + len(wav)], snr_db)
        target = out / Path(record.path).relative_to(root)
        write_audio(target, np.clip(mixture, -1, 1), SR)
        records.append(record.model_copy(update={"path": str(target), "md5": None}))
    for csv in root.glob("*/attributes_*.csv"):
        (out / csv.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(csv, out / csv.relative_to(root))
    return Manifest(root=str(out), records=records)


def _official(train: Manifest, test: Manifest, config, seeds: list[int]) -> dict:
    from _baseline import run_seeds

    result = run_seeds(train, test, config, seeds)
    return {kind: {m: result["summary"][kind][m]["mean"] for m in ("auc_source", "auc_target", "pauc", "official")}
            for kind in ("mse", "mahalanobis")}


def detector_rows(name: str, train: Manifest, test: Manifest, separated_root: Path, config, seeds: list[int]) -> list[dict]:
    """original / separated / both for one dataset; `separated_root` holds the separated train and test clips.

    As `separation.use` does in the pipeline: separated trains and scores on the separated clips;
    both trains on the original plus the separated training clips and scores the original ones.
    """
    separated = Manifest(root=str(separated_root), records=[
        r.model_copy(update={"path": str(separated_root / Path(r.path).resolve().relative_to(
            Path(train.root if r.split == "train" else test.root).resolve()))})
        for r in train.records + test.records])
    rows = []
    for use in ("original", "separated", "both"):
        base = separated if use == "separated" else train
        records = base.select(split="train").records + (separated.select(split="train").records if use == "both" else [])
        score_on = (separated if use == "separated" else test).select(split="test")
        started = time.perf_counter()
        result = _official(Manifest(root=base.root, records=records), score_on, config, seeds)
        rows.append({"dataset": name, "detector input": use, "n_train_clips": len(records),
                     "official_mse": result["mse"]["official"], "auc_source_mse": result["mse"]["auc_source"],
                     "auc_target_mse": result["mse"]["auc_target"], "pauc_mse": result["mse"]["pauc"],
                     "official_mahalanobis": result["mahalanobis"]["official"],
                     "seconds": time.perf_counter() - started})
        print(f"  {name} / {use}: official (MSE) {rows[-1]['official_mse']:.4f}")
    return rows


def separate_clips(model_dir: Path, manifests: list[Manifest], out: Path) -> tuple[Path, float]:
    """Separate the clips of each manifest into out (same relative paths under each manifest's root); x real time."""
    from asdflow.separation.denoise import separate_dataset

    seconds = audio = 0.0
    for manifest in manifests:
        run = separate_dataset(model_dir / "separator", manifest, out, splits=("train", "test"), progress=False)
        seconds += run.seconds
        audio += run.audio_seconds
    return out, audio / seconds if seconds else 0.0


def synthetic_detector_benchmark(model_dir: Path, work: Path, noise: NoisePools, config, seeds, quick: bool) -> list[dict]:
    synth = SynthConfig(machine_types=["fan"], duration=1.0 if quick else 2.0, n_train_source=8 if quick else 60,
                        n_train_target=2 if quick else 6, n_test_per_condition=3 if quick else 15,
                        n_supplemental_clean=0, n_supplemental_noise=0, seed=21)
    clean_root = work / "detector_synth_clean"
    if not clean_root.exists():
        synthesize_dataset(synth, clean_root, progress=False)
    dataset = build_manifest(clean_root, progress=False, compute_md5=False)
    noisy = _add_noise(dataset, noise.held_out + noise.unseen, work / "detector_synth_noisy", 0.0, seed=5)
    separated_root, _ = separate_clips(model_dir, [noisy], work / "detector_synth_separated")
    return detector_rows("synthetic fan + real noise at 0 dB", noisy.select(split="train"), noisy.select(split="test"),
                         separated_root, config, seeds)


def valve_detector_benchmark(model_dir: Path, work: Path, config, seeds, quick: bool) -> tuple[list[dict], float]:
    from real_valve import first_shot_manifests

    train, test = first_shot_manifests()
    if quick:
        picked = [r for d in ("source", "target") for lab in ("normal", "anomaly")
                  for r in [x for x in test.records if x.domain == d and x.label == lab][:2]]
        test = Manifest(root=test.root, records=picked)
        train = Manifest(root=train.root, records=train.records[:6])
    separated_root, realtime = separate_clips(model_dir, [Manifest(root=train.root, records=train.records + test.records)],
                                              work / "detector_valve_separated")
    return detector_rows("real valve first-shot", train, test, separated_root, config, seeds), realtime


# -- (c) speed -------------------------------------------------------------------------------------


def speed_rows(profiles: list[str], quick: bool) -> list[dict]:
    from asdflow.separation.losses import neg_si_snr_loss
    from asdflow.separation.model import build_separator

    torch.set_num_threads(1)
    rows = []
    for profile in profiles:
        sep = load_config(profile=profile).separation
        model = build_separator(sep)
        optimizer = torch.optim.Adam(model.parameters(), lr=sep.learning_rate)
        length = int(sep.segment_seconds * SR)
        x, ref = torch.randn(sep.batch_size, 1, length) * 0.1, torch.randn(sep.batch_size, 2, length) * 0.1
        n_steps = 2 if quick else 5
        for i in range(n_steps + 1):
            if i == 1:
                began = time.perf_counter()
            loss = neg_si_snr_loss(model(x), ref)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        steps_per_second = n_steps / (time.perf_counter() - began)
        model.eval()
        clip = np.random.default_rng(0).standard_normal(10 * SR).astype(np.float32) * 0.1
        separate_waveform(model, clip[:SR], SR, sep.chunk_seconds)  # warm-up
        began = time.perf_counter()
        rounds = 1 if quick else 3
        for _ in range(rounds):
            with torch.inference_mode():
                separate_waveform(model, clip, SR, sep.chunk_seconds)
        realtime = rounds * 10.0 / (time.perf_counter() - began)
        n_params = sum(p.numel() for p in model.parameters())
        rows.append({"profile": profile, "params": n_params,
                     "sizes": f"N{sep.N} L{sep.L} B{sep.B} H{sep.H} P{sep.P} X{sep.X} R{sep.R}",
                     "segment_s": sep.segment_seconds, "batch": sep.batch_size,
                     "train_steps_per_s": steps_per_second, "denoise_x_realtime": realtime})
    return rows


def parse_train_log(path: Path) -> dict:
    """The last progress-bar state of an earlier (stopped) training call: steps, elapsed seconds, running loss."""
    import re

    text = Path(path).read_text(errors="replace")
    found = re.findall(r"(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<[^,]*,\s*[^,]*, loss=(-?[\d.]+)\]", text)
    if not found:
        return {}
    step, total, hours, minutes, seconds, loss = found[-1]
    elapsed = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    first_loss = float(found[0][5])
    return {"log": str(path), "steps": int(step), "of": int(total), "elapsed_s": elapsed,
            "steps_per_second": int(step) / elapsed if elapsed else None,
            "running_loss_first": first_loss, "running_loss_last": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8000, help="separator training steps (default 8000)")
    parser.add_argument("--reuse", action="store_true", help="reuse a finished separator of the same steps")
    parser.add_argument("--quick", action="store_true", help="tiny sizes everywhere: checks the script runs")
    parser.add_argument("--train-only", action="store_true", help="train (or resume) the separator and stop")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="detector seeds (default: 0)")
    parser.add_argument("--train-log", type=Path, help="progress log of a training call stopped at a checkpoint "
                        "(its steps/s and running loss go into the results)")
    args = parser.parse_args()
    for path in (SPLIT, VALVE, NOISE):
        if not path.exists():
            raise SystemExit(f"real data absent: {path}")
    steps = 20 if args.quick else args.steps
    config = bench_config(steps, args.quick)
    work = WORK_DIR / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "model" if args.quick else MODEL_DIR
    noise = real_noise_pools()
    valve_train, valve_test = valve_split()
    synth = synthetic_supplemental(work, args.quick)
    source = training_source(config, synth, noise, valve_train)
    started = time.perf_counter()
    training = train_or_reuse(config, source, model_dir, args.reuse, progress=not args.quick)
    if args.train_log:
        training["stopped_run"] = parse_train_log(args.train_log)
    print(f"separator: {training} ({time.perf_counter() - started:.0f} s)")
    if args.train_only:
        return

    print("\n(a) SI-SNR improvement (dB) on held-out mixtures, mean per SNR")
    separation = si_snri_table(model_dir, synth, noise, valve_test, args.quick)
    print_table(separation, ["mixtures", "snr_db", "n", "convtasnet_si_snri_db", "wiener_oracle_si_snri_db",
                             "wiener_pool_si_snri_db"], digits=3)

    print("\n(b) baseline autoencoder with and without separation (official score; MSE and Mahalanobis)")
    detector_config = load_config(profile="tiny" if args.quick else "demo", overrides={"progress": False})
    detector = synthetic_detector_benchmark(model_dir, work, noise, detector_config, args.seeds, args.quick)
    valve_rows, valve_realtime = valve_detector_benchmark(model_dir, work, detector_config, args.seeds, args.quick)
    detector += valve_rows
    print_table(detector, ["dataset", "detector input", "n_train_clips", "official_mse", "auc_source_mse",
                           "auc_target_mse", "pauc_mse", "official_mahalanobis"], digits=4)

    print("\n(c) speed on this machine (one torch thread)")
    speed = speed_rows(["tiny"] if args.quick else ["tiny", "demo"], args.quick)
    bench_sep = json.loads((model_dir / "separator" / "separator.json").read_text())
    speed.append({"profile": "benchmark separator", "params": sum(p.numel() for p in load_separator(model_dir / "separator")[0].parameters()),
                  "sizes": f"N{config.N} L{config.L} B{config.B} H{config.H} P{config.P} X{config.X} R{config.R}",
                  "segment_s": config.segment_seconds, "batch": config.batch_size,
                  "train_steps_per_s": (training.get("steps_per_second_this_call")
                                        or training.get("stopped_run", {}).get("steps_per_second") or float("nan")),
                  "denoise_x_realtime": valve_realtime})
    print_table(speed, ["profile", "params", "sizes", "segment_s", "batch", "train_steps_per_s", "denoise_x_realtime"],
                digits=3)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    path = write_results("separation_quick" if args.quick else "separation", {
        "quick": args.quick, "separator": {"config": bench_sep["config"], "version": bench_sep["version"],
                                           "training": training, "noise_pools": noise.names,
                                           "valve_train_clips": len(valve_train), "valve_test_normals": len(valve_test)},
        "si_snri": separation, "detector": detector, "speed": speed, "load_average": load,
        "detector_profile": detector_config.profile, "seeds": args.seeds,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
