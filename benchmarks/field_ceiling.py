"""How far training could take the field photos: the `best` preset trained on the field camera's own views.

A diagnostic ceiling, never a preset. The shipping presets train on their own augmentations (data.py), which share
no code with the catalog photo models (tests/test_photo_models.py). Here the training views are drawn instead by the
field camera itself (photo_models.field_view, each training image's two views sharing its product colour, as a
field product's query and index views do), so the model is trained on exactly the distortions it is scored on. The
gap between this run and the preset says how much of the field photos' shortfall is the augmentations' mismatch
and how much is what ~4,000 images, this backbone and this budget can learn at all. Scored like
benchmarks/ablation.py (MAR@10, exact cosine top-10, the run's test-time average) and printed as one table.

    python benchmarks/field_ceiling.py --train /work/q/studio --eval studio=/work/q/studio,field=/work/q/field \\
        --work /work/q/ceiling --set max_train_images=0 --set epochs=6
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import run_variant  # noqa: E402

from eproduct_core import photo_models  # noqa: E402
from eproduct_core import train as training  # noqa: E402

log = logging.getLogger("field_ceiling")


def field_views(images: torch.Tensor, mode: str, generator: torch.Generator | None = None, families=()) -> torch.Tensor:
    """Stands in for data.augment: each (grey) training image drawn by the field camera at the batch's size.

    The product colour is seeded by the image's pixels, so both views of one image share it; the view's other draws
    come from the step's generator."""
    del mode, families
    size = images.shape[-1]
    items = F.interpolate(images.mean(dim=1, keepdim=True).cpu(), size=(28, 28), mode="area")
    items = (items[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = []
    for item in items:
        product = int.from_bytes(hashlib.sha256(item.tobytes()).digest()[:8], "little")
        view = int(torch.randint(0, 2**62, (1,), generator=generator))
        photo = photo_models.field_view(item, np.random.default_rng([product, 99991]), np.random.default_rng(view))
        out.append(torch.from_numpy(np.asarray(photo, np.uint8).copy()).permute(2, 0, 1))
    batch = torch.stack(out).float().div(255.0)
    return F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False).to(images.device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="catalog folder to train on (grey Fashion-MNIST items)")
    parser.add_argument("--eval", required=True, help="comma list NAME=CATALOG to score on")
    parser.add_argument("--work", default="/tmp/eproduct-field-ceiling")
    parser.add_argument("--name", default="field-ceiling", help="the run's folder name under WORK/runs")
    parser.add_argument("--set", action="append", default=["max_train_images=1000", "epochs=1"], help="overrides")
    parser.add_argument("--tta", default="flip", choices=["none", "flip", "multicrop"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.set)
    evals = {name: Path(path) for name, path in (pair.split("=", 1) for pair in args.eval.split(","))}
    training.augment = field_views  # the diagnostic: training views from the field camera, not data.augment
    training.shared_tint = lambda batch, generator: batch  # the camera colours each product itself
    started = time.perf_counter()
    row, _ = run_variant(args.name, overrides, Path(args.train), evals, Path(args.work), args.tta)
    cells = " / ".join(f"{key} {value:.3f}" for key, value in row.items() if "/" in key and isinstance(value, float))
    lines = [
        "| training views | overrides | MAR@10 | train s | images/s |",
        "|---|---|---|---|---|",
        f"| the field camera's own (a ceiling, not a preset) | {overrides} | {cells} | {row['train_s']:.0f} | "
        f"{row['images_per_s']:.1f} |",
        "",
        f"Rerun: `python benchmarks/field_ceiling.py {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {args.threads} "
        f"threads; {time.perf_counter() - started:.0f} s; load average when written: {os.getloadavg()[0]:.1f}.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
