"""`eproduct train`: train a model on a catalog into a run folder (a preset plus overrides)."""

from __future__ import annotations

import argparse

# flag -> TrainConfig field, for the common overrides; anything else goes through --set key=value
OVERRIDES = {
    "epochs": int,
    "batch_size": int,
    "backbone": str,
    "weights": str,
    "image_size": int,
    "lr": float,
    "max_train_images": int,
    "device": str,
    "workers": int,
    "prefetch_factor": int,
    "checkpoint_every": int,
    "seed": int,
}


def _train(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from .. import run_folder
    from ..config import PRESETS, preset, with_overrides
    from ..errors import EproductError
    from ..train import train

    out = Path(args.out)
    if args.resume and args.preset is None and (out / run_folder.CONFIG).is_file():
        config = run_folder.read_config(out)
    else:
        config = preset(args.preset or "seed")
    overrides = {key: getattr(args, key) for key in OVERRIDES if getattr(args, key) is not None}
    for item in args.set or []:
        if "=" not in item:
            raise EproductError(
                f"--set {item!r} must look like key=value (e.g. --set metric=true). Presets: {sorted(PRESETS)}."
            )
        key, value = item.split("=", 1)
        overrides[key.strip().replace("-", "_")] = value.strip()
    config = with_overrides(config, overrides)
    logging.getLogger(__name__).info("training %s preset into %s", config.preset, out)
    train(config, args.catalog, out, resume=args.resume)
    print(f"run written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model (seed, fast-demo or best preset) into a run folder")
    parser.add_argument("--catalog", required=True, help="catalog folder (train.csv, optional val.csv)")
    parser.add_argument("--preset", default=None, help="seed (the report, default), fast-demo or best")
    parser.add_argument("--out", required=True, help="run folder to write (config.json, metrics.jsonl, checkpoint.pt)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run from its last checkpoint (an epoch's end, or mid-epoch with --checkpoint-every)",
    )
    for key, kind in OVERRIDES.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, type=kind, default=None, help=f"override {key}")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set metric=true --set search.bits=64 (repeatable)",
    )
    parser.set_defaults(func=_train)
