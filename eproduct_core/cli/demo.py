"""`eproduct demo`: build a workspace (synthetic catalog -> training -> embeddings -> indexes).

`--catalog DIR` builds one from a copy of your own catalog, `--catalog fashion-mnist` from Fashion-MNIST;
the app's workspace chooser lists every workspace under $EPRODUCT_HOME.

The same code the app runs on first start (`workspace.build_demo`); safe to run while the app builds
too (one builder holds the lock, the other waits and then reuses the result).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..workspace import build_demo, demo_path
    from .train import parse_set

    target = Path(args.workspace).expanduser() if args.workspace else demo_path()
    overrides = parse_set(args.set)
    started = time.monotonic()
    with tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed} {postfix}") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
            bar.set_postfix_str(message[:60], refresh=False)
            bar.refresh()

        built = build_demo(
            target.parent,
            preset=args.preset,
            progress=progress,
            name=target.name,
            size=args.size,
            seed=args.seed,
            train_overrides=overrides,
            catalog=args.catalog,
        )
    seconds = time.monotonic() - started
    indexes = ", ".join(built.indexes)
    print(f"demo workspace ready in {built.path} ({seconds:.1f} s); indexes: {indexes}")
    print(f"open it: EPRODUCT_HOME={built.path.parent} streamlit run app.py")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="build the demo workspace the app opens on first start")
    demo.add_argument("--workspace", metavar="DIR", help="workspace folder to create (default $EPRODUCT_HOME/demo)")
    demo.add_argument("--preset", default="fast-demo", help="training preset (default fast-demo)")
    demo.add_argument("--size", default="small", choices=("tiny", "small", "medium"), help="synthetic catalog size")
    demo.add_argument(
        "--catalog",
        metavar="DIR|fashion-mnist",
        help="build from a copy of this catalog folder (your own), or 'fashion-mnist', instead of a synthetic one",
    )
    demo.add_argument("--seed", type=int, default=0, help="seeds the catalog and the hyperplanes")
    demo.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a training setting, e.g. epochs=1")
    demo.set_defaults(func=_demo)
