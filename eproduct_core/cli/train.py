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


def parse_set(items: list[str] | None) -> dict[str, str]:
    """`--set key=value` items -> {field: text} (dashes in keys become underscores), or an `EproductError`."""
    from ..errors import EproductError

    overrides = {}
    for item in items or []:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise EproductError(
                f"--set {item!r} must look like key=value, e.g. --set epochs=1 or --set search.bits=64."
            )
        overrides[key.strip().replace("-", "_")] = value.strip()
    return overrides


def _train(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from .. import run_folder
    from ..config import preset, with_overrides
    from ..train import train

    out = Path(args.out)
    if args.resume and args.preset is None and (out / run_folder.CONFIG).is_file():
        config = run_folder.read_config(out)
    else:
        config = preset(args.preset or "seed")
    overrides: dict[str, object] = {key: getattr(args, key) for key in OVERRIDES if getattr(args, key) is not None}
    overrides.update(parse_set(args.set))
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
