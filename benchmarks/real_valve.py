"""Baseline autoencoder on the real DCASE 2023 valve first-shot split, over 3 seeds.

Trains on the `train` rows of ../shared/benchmarks/splits/valve-2023-firstshot.csv,
scores every `test` row, and reports AUC source, AUC target, pAUC and the
official score for the MSE and the selective-Mahalanobis scores (mean ± std
over seeds). Writes benchmarks/results/real_valve.json.

    .venv/bin/python benchmarks/real_valve.py [--profile full] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baseline import run_seeds, table_rows  # noqa: E402
from _common import REPO_ROOT, print_table, write_results  # noqa: E402

from asdflow.config import load_config  # noqa: E402
from asdflow.data.dcase_reader import build_manifest  # noqa: E402
from asdflow.data.manifest import Manifest  # noqa: E402

SPLIT = REPO_ROOT / ".." / "shared" / "benchmarks" / "splits" / "valve-2023-firstshot.csv"
DATA = REPO_ROOT / ".." / "shared" / "data" / "real" / "dcase2023t2_dev"


def first_shot_manifests(
    split_csv: Path = SPLIT, data_root: Path = DATA, mirror: bool = False
) -> tuple[Manifest, Manifest]:
    """The split's train rows become training clips (normal, split=train) and its test rows the test set.

    `mirror`: the same split with the two halves of the test normals swapped: the 2 recorded train
    clips plus the published test normals train, the published training normals from the test
    folder are scored with all 100 anomalies. A gain that only one of the two shows is noise.
    """
    split = pd.read_csv(split_csv)
    if mirror:
        from_test_folder = split.file.str.startswith("valve/test/") & (split.label == "normal")
        split = split.copy()
        split.loc[from_test_folder, "role"] = split.loc[from_test_folder, "role"].map({"train": "test", "test": "train"})
    manifest = build_manifest(data_root, ["valve"], progress=False)
    by_path = {str(Path(r.path).resolve().relative_to(data_root.resolve())): r for r in manifest.records}
    missing = [f for f in split["file"] if f not in by_path]
    if missing:
        raise SystemExit(f"{len(missing)} split files are not in {data_root}: {missing[:3]}")
    train = [by_path[f].model_copy(update={"split": "train"}) for f in split.loc[split.role == "train", "file"]]
    test = [by_path[f].model_copy(update={"split": "test"}) for f in split.loc[split.role == "test", "file"]]
    return Manifest(root=str(data_root), records=train), Manifest(root=str(data_root), records=test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", help="config profile of the detector (default: full)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if not SPLIT.exists() or not DATA.exists():
        raise SystemExit(f"real data absent: need {SPLIT} and {DATA}")

    config = load_config(profile=args.profile, overrides={"progress": False})
    train, test = first_shot_manifests()
    print(f"valve first-shot: {len(train)} training clips, {len(test)} test clips; profile {args.profile}, "
          f"{config.detector.baseline_ae.epochs} epochs; seeds {args.seeds}")
    started = time.perf_counter()
    result = run_seeds(train, test, config, args.seeds)
    result.update(profile=args.profile, seeds=args.seeds, n_train=len(train), n_test=len(test),
                  detector=config.detector.model_dump(), seconds=time.perf_counter() - started)
    path = write_results("real_valve", result)
    print_table(table_rows(result), ["score", "auc_source", "auc_target", "pauc", "official"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
