"""`eproduct embed`: embed one catalog split with a trained run into an embeddings folder."""

from __future__ import annotations

import argparse


def _embed(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..embed import embed_split, parse_part

    part = parse_part(args.part)
    bars: list = []  # opened on the first report, so an error before it prints on a line of its own

    def progress(fraction: float, message: str) -> None:
        if not bars:
            bars.append(
                tqdm(total=1000, desc=f"embed {args.split}", unit="‰", disable=part[0] != 0 and args.part is None)
            )
        bar = bars[0]
        bar.n = int(fraction * 1000)
        bar.set_postfix_str(message)
        bar.refresh()

    out = embed_split(
        args.run,
        args.catalog,
        args.split,
        args.kind,
        args.out,
        batch_size=args.batch_size,
        device=args.device,
        part=part,
        progress=progress,
        strict=args.strict,
        workers=args.workers,
    )
    if bars:
        bars[0].close()
    print(f"embeddings written to {out} (part {part[0]}/{part[1]})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="embed a catalog split with a trained run")
    parser.add_argument("--run", required=True, help="run folder from `eproduct train`")
    parser.add_argument("--catalog", required=True, help="catalog folder")
    parser.add_argument("--split", required=True, choices=["index", "query", "train", "val"])
    parser.add_argument("--kind", required=True, choices=["seed", "seed-3d", "penultimate", "metric"])
    parser.add_argument("--out", required=True, help="embeddings folder to write")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for decoding")
    parser.add_argument(
        "--part",
        default=None,
        help="i/n: embed only the i-th (from 0) of n row blocks (default under torchrun: this rank's block)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first unreadable image instead of skipping it"
    )
    parser.set_defaults(func=_embed)
