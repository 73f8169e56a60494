"""`eproduct embed`: embed one catalog split with a trained run into an embeddings folder (or one part of it);
`eproduct embed merge PARTS... --out DIR`: check the parts and merge them into one folder."""

from __future__ import annotations

import argparse

from ..config import TTA_MODES

REQUIRED = ("run", "catalog", "split", "kind", "out")


def _merge(args: argparse.Namespace) -> int:
    from ..embed_parts import merge_parts

    report = merge_parts(args.parts, args.out)
    print(
        f"{report.parts} part(s) checked and merged into {report.out}: {report.rows:,} rows "
        f"({report.bad_files} unreadable images skipped). Next: eproduct index build --embeddings {report.out} ..."
    )
    return 0


def _embed(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..embed import embed_split, parse_part
    from ..errors import EproductError

    missing = [f"--{name}" for name in REQUIRED if getattr(args, name) is None]
    if missing:
        raise EproductError(f"eproduct embed needs {', '.join(missing)} (or: eproduct embed merge PARTS... --out DIR).")

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
        prefetch_factor=args.prefetch_factor,
        tta=args.tta,
    )
    if bars:
        bars[0].close()
    print(f"embeddings written to {out} (part {part[0]}/{part[1]})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed", help="embed a catalog split with a trained run (`embed merge`: join the parts of a split)"
    )
    parser.add_argument("--run", help="run folder from `eproduct train` (required)")
    parser.add_argument("--catalog", help="catalog folder (required)")
    parser.add_argument("--split", choices=["index", "query", "train", "val"], help="(required)")
    parser.add_argument("--kind", choices=["seed", "seed-3d", "penultimate", "metric"], help="(required)")
    parser.add_argument("--out", help="embeddings folder to write (required)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for decoding")
    parser.add_argument("--prefetch-factor", type=int, default=2, help="batches each worker decodes ahead")
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        default=None,
        help="test-time augmentation: flip averages each penultimate/metric vector with its mirror's; multicrop "
        "over six views (the image, a centre crop, their mirrors, two rotations) (default: the run's embed_tta)",
    )
    parser.add_argument(
        "--part",
        default=None,
        help="i/n: embed only the i-th (from 0) of n row blocks (default under torchrun: this rank's block)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first unreadable image instead of skipping it"
    )
    parser.set_defaults(func=_embed)
    commands = parser.add_subparsers(dest="embed_command", metavar="{merge}")
    merge = commands.add_parser(
        "merge",
        help="check that every part (--part i/n or torchrun ranks) is present, complete and consistent; merge them",
        description="Reads the part markers in PARTS (folders; one folder may hold several parts) and refuses "
        "missing, unfinished, repeated or inconsistent parts (kind, dim, run, catalog, split, part count) and "
        "missing or repeated ids, before writing anything. The merged folder feeds `eproduct index build`.",
    )
    merge.add_argument("parts", nargs="+", help="embeddings folders the parts wrote")
    merge.add_argument("--out", required=True, help="merged embeddings folder to write (new or empty)")
    merge.set_defaults(func=_merge)
