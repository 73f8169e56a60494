"""The spread behind tests/test_train.py's thresholds: its 8-epoch tiny run repeated over seeds.

Another CPU rounds differently (AVX2 vs AVX-512) and training amplifies that like another seed would,
so a threshold must hold for every seed, with room. Prints, per seed: the loss ratio (last / first
epoch), validation leaf accuracy, and plain and balanced (mean per class) training leaf accuracy,
beside chance and the most common leaf's share. Writes nothing.

    python benchmarks/train_test_margins.py --seeds 0 1 2 3 4 5 6 7
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from eproduct_core import run_folder  # noqa: E402
from eproduct_core.catalog import read_catalog  # noqa: E402
from eproduct_core.config import TrainConfig  # noqa: E402
from eproduct_core.data import CatalogImages  # noqa: E402
from eproduct_core.embed import load_run  # noqa: E402
from eproduct_core.synthetic import make_synthetic_catalog  # noqa: E402
from eproduct_core.train import train  # noqa: E402
from eproduct_core.validation import predict_dataset  # noqa: E402

# tests/test_train.py's `trained` fixture
TINY = dict(
    backbone="tiny", image_size=32, batch_size=32, lr=3e-3, device="cpu", dhc=True, metric=True,
    dependence="soft", instance_weight=0.0, metric_labels="leaf", augment="light", epochs=8,
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    work = Path(tempfile.mkdtemp(prefix="eproduct-margins-"))
    catalog_dir = make_synthetic_catalog(work / "tiny", seed=0, size="tiny")
    frame = pd.read_csv(catalog_dir / "train.csv")
    chance, majority = 1 / frame["leaf"].nunique(), frame["leaf"].value_counts(normalize=True).max()
    print(f"load {os.getloadavg()[0]:.1f}; chance {chance:.3f}, most common leaf {majority:.3f}")
    print("seed  loss_ratio  val_leaf  train_leaf  train_leaf_balanced")
    catalog = read_catalog(catalog_dir)
    for seed in args.seeds:
        run = train(TrainConfig(seed=seed, **TINY), catalog_dir, work / f"run{seed}")
        records = run_folder.read_metrics(run)
        bundle = load_run(run, "cpu")
        parents = [np.zeros(0, np.int64)] + [bundle.taxonomy.parent_array(level) for level in (1, 2)]
        predicted, _ = predict_dataset(
            bundle.model, CatalogImages(catalog, catalog.train, 32), bundle.device, 64, parents
        )
        leaf = bundle.taxonomy.encode(catalog.train)[:, 2]
        plain = float((predicted[:, 2] == leaf).mean())
        balanced = float(np.mean([(predicted[leaf == c, 2] == c).mean() for c in np.unique(leaf)]))
        ratio = records[-1]["train_loss"] / records[0]["train_loss"]
        print(f"{seed:>4}  {ratio:10.3f}  {records[-1]['val_acc']['leaf']:8.3f}  {plain:10.3f}  {balanced:19.3f}")


if __name__ == "__main__":
    main()
