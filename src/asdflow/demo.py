"""The main job on the embedded default: synthesize, train, score, evaluate, print the scores."""

from __future__ import annotations

import time
from pathlib import Path

from asdflow.config import AsdflowConfig


def run_demo(workdir: str | Path, config: AsdflowConfig, echo=print) -> dict:
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.data.synth import synthesize_dataset
    from asdflow.jobs import evaluate_clips, read_scores, score_clips, train_detector

    import pandas as pd

    started = time.perf_counter()
    workdir = Path(workdir)
    data_dir = workdir / "data"
    echo(f"[1/4] synthesizing {', '.join(config.synth.machine_types)} ({config.profile} profile) into {data_dir}")
    synthesize_dataset(config.synth, data_dir, progress=config.progress)
    manifest = build_manifest(data_dir, config.synth.machine_types, progress=config.progress)
    manifest.save(workdir / "manifest")

    frames = []
    for machine in config.synth.machine_types:
        echo(f"[2/4] training {config.detector.family} for {machine}")
        result = train_detector(manifest, machine, config, workdir / "detectors" / machine)
        echo(f"[3/4] scoring {machine} test clips")
        scored = score_clips(result.detector_dir, manifest, machine, workdir / "scores" / machine, config.progress)
        frames.append(read_scores(scored.scores_csv))

    echo("[4/4] evaluating (DCASE official score)")
    report = evaluate_clips(pd.concat(frames), manifest, workdir / "evaluation")
    echo(report.to_table())
    seconds = time.perf_counter() - started
    echo(f"official score {report.official:.4f}; plots and submission files under {workdir} ({seconds:.0f} s)")
    return {"official": report.official, "seconds": seconds, "workdir": str(workdir)}
