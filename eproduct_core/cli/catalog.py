"""`eproduct catalog ...`: validate a catalog folder, or make one (synthetic demo, Fashion-MNIST, the real
eProduct dataset imported in place, a proxy query/index split with groundtruth)."""

from __future__ import annotations

import argparse

from ..photo_models import FIELD_STEPS  # numpy/PIL only
from ..proxy_split import ProxySettings  # numpy/pandas/PIL only: its defaults are the CLI's


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..catalog import validate_catalog
    from ..errors import EproductError

    if not Path(args.dir).is_dir():
        raise EproductError(f"Catalog folder {args.dir} does not exist. Create one with `eproduct catalog synth DIR`.")
    check = "none" if args.skip_files else ("sample" if args.sample is not None else "all")
    problems = validate_catalog(args.dir, check_files=check, sample=args.sample or 0)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.dir}")
        return 1
    print(f"{args.dir}: catalog is valid")
    return 0


def _import_eproduct(args: argparse.Namespace) -> int:
    from ..eproduct_import import import_eproduct

    report = import_eproduct(args.root, args.out, query_split=args.query_split)
    for line in report.lines():
        print(line)
    print(f"next: eproduct catalog validate {args.out} --sample 2000")
    return 0


def _proxy_split(args: argparse.Namespace) -> int:
    from ..catalog import read_catalog
    from ..proxy_split import proxy_split, score_groups

    settings = ProxySettings(
        title_threshold=args.title_threshold,
        image_threshold=args.image_threshold,
        index_distractors=args.index_distractors,
        seed=args.seed,
    )
    update, close = _progress_bar("thumbnails")
    try:
        report, groups = proxy_split(args.catalog, args.out, settings, progress=update)
    finally:
        close()
    print(
        f"proxy catalog written to {report.out}: {report.groups:,} queries (groups of 2+ val photos), "
        f"{report.matches:,} proxy true matches, {report.index_rows:,} index rows "
        f"(title Jaccard >= {settings.title_threshold}, colour-signature cosine >= {settings.image_threshold}; "
        f"{report.unreadable} unreadable val images left out)"
    )
    val = read_catalog(args.catalog).val
    if val is not None and "product_id" in val.columns:
        score = score_groups(groups, val["product_id"].reset_index(drop=True).to_numpy())
        print(
            f"against val.csv's product_id: pair precision {score['precision']:.3f}, pair recall {score['recall']:.3f} "
            f"({score['correct_pairs']:,} of {score['proxy_pairs']:,} proxy pairs correct; "
            f"{score['true_pairs']:,} true same-product pairs)"
        )
    print("Scores on this catalog are proxy scores (catalog.json says groundtruth: proxy), not the challenge's.")
    return 0


def _progress_bar(description: str):
    """A `progress(done, total)` callback drawing a tqdm bar (opened on the first call), and a closer."""
    from tqdm import tqdm

    bars: list = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=description, unit="img", total=total))
        bars[0].update(done - bars[0].n)

    return update, lambda: bars and bars[0].close()


def _synth(args: argparse.Namespace) -> int:
    from ..synthetic import make_synthetic_catalog

    update, close = _progress_bar("drawing images")
    try:
        out = make_synthetic_catalog(
            args.dir, seed=args.seed, size=args.size, progress=update, overwrite=args.overwrite
        )
    finally:
        close()
    print(f"synthetic catalog ({args.size}, seed {args.seed}) written to {out}")
    return 0


def _fashion_mnist(args: argparse.Namespace) -> int:
    from ..fashion_mnist import make_fashion_mnist_catalog

    update, close = _progress_bar("writing images")
    try:
        out = make_fashion_mnist_catalog(
            args.dir,
            source=args.source,
            train_per_class=args.train_per_class,
            long_tail=args.long_tail,
            queries=args.queries,
            views=args.views,
            seed=args.seed,
            distractors=args.distractors,
            val_per_class=args.val_per_class,
            progress=update,
            overwrite=args.overwrite,
            photo_model=args.photo_model,
            field_without=tuple(step for step in args.field_without.split(",") if step),
        )
    finally:
        close()
    print(f"Fashion-MNIST catalog ({args.photo_model} photos) written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    catalog = subparsers.add_parser("catalog", help="validate or create a catalog folder")
    commands = catalog.add_subparsers(dest="catalog_command", required=True)

    validate = commands.add_parser("validate", help="report every problem with a catalog folder")
    validate.add_argument("dir", help="catalog folder")
    files = validate.add_mutually_exclusive_group()
    files.add_argument("--sample", type=_count, metavar="N", help="open only N random images per split")
    files.add_argument("--skip-files", action="store_true", help="do not open image files at all")
    validate.set_defaults(func=_validate)

    imported = commands.add_parser(
        "import-eproduct",
        help="make a catalog of the eProduct dataset as it ships (images stay where they are)",
        description="Reads ROOT/metadata/{train,val,index,QUERY}.csv (UUID, IMAGE_PATH; train/val also AUCT_TITL, "
        "META_CATEG_ID, CATEG_LVL2_ID, LEAF_CATEG_ID) and writes a catalog whose catalog.json points at ROOT/Images "
        "(no image is copied). Titles are kept exactly; extra columns are kept. Prints rows per split and "
        "classes per level. The query split has no groundtruth: see `catalog proxy-split`.",
    )
    imported.add_argument("root", help="the eProduct folder holding metadata/ and Images/")
    imported.add_argument("out", help="catalog folder to write (new or empty)")
    imported.add_argument(
        "--query-split", default="query_part1", help="metadata/<NAME>.csv to use as query.csv (default query_part1)"
    )
    imported.set_defaults(func=_import_eproduct)

    proxy = commands.add_parser(
        "proxy-split",
        help="make a query/index split with proxy groundtruth from val.csv (images training does not see)",
        description="Within each leaf of val.csv, photos whose titles share >= --title-threshold of their words "
        "(Jaccard) and whose 16x16 grey thumbnails have cosine >= --image-threshold are taken as the same product; "
        "from each group of 2+ one photo is a query and the others its true matches. The index holds every other "
        "val photo (+ --index-distractors rows of index.csv). A proxy: measure MAR@10 before submitting.",
    )
    proxy.add_argument("catalog", help="catalog folder with a val.csv (e.g. from import-eproduct)")
    proxy.add_argument("out", help="proxy catalog folder to write (new or empty)")
    defaults = ProxySettings()
    proxy.add_argument(
        "--title-threshold",
        type=float,
        default=defaults.title_threshold,
        help=f"min title word Jaccard (default {defaults.title_threshold})",
    )
    proxy.add_argument(
        "--image-threshold",
        type=float,
        default=defaults.image_threshold,
        help=f"min colour-signature cosine (default {defaults.image_threshold})",
    )
    proxy.add_argument(
        "--index-distractors", type=_count, default=0, metavar="N", help="rows of index.csv added as distractors"
    )
    proxy.add_argument("--seed", type=int, default=0, help="picks each group's query and the distractors")
    proxy.set_defaults(func=_proxy_split)

    synth = commands.add_parser(
        "synth",
        help="draw the synthetic demo catalog (deterministic by seed)",
        description="Draw an eProduct-like catalog: 3-level taxonomy, long-tailed leaves, lookalike products "
        "that differ in fine details, several photos per product, query/index/groundtruth. "
        "tiny ~400 images (tests), small ~5,000 (the demo), medium ~25,000.",
    )
    synth.add_argument("dir", help="output folder (new or empty)")
    synth.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical catalog (default 0)")
    synth.add_argument("--size", choices=["tiny", "small", "medium"], default="small", help="default small")
    synth.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    synth.set_defaults(func=_synth)

    fashion = commands.add_parser(
        "fashion-mnist",
        help="make a catalog of real product photos from Fashion-MNIST",
        description="Train/val from Fashion-MNIST's train split (3-level taxonomy over its 10 classes); "
        "query/index from its test split as augmented views (mild affine warp, scale, shift, "
        "brightness/contrast, slight blur and noise): one view per query item is the query, 1..--views "
        "other views are in the index among distractor items' views. PNGs upscaled 28 -> 56 px. "
        "Reads --source, else /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist), "
        "else downloads with torchvision.",
    )
    fashion.add_argument("dir", help="output folder (new or empty)")
    fashion.add_argument("--source", metavar="DIR", help="folder with the *-idx?-ubyte(.gz) files")
    fashion.add_argument(
        "--train-per-class", type=int, default=400, metavar="N", help="train items per class (default 400)"
    )
    fashion.add_argument(
        "--val-per-class", type=int, metavar="N", help="val items per class (default train-per-class / 6)"
    )
    fashion.add_argument("--long-tail", action="store_true", help="keep 1/(k+1) of the train items of the k-th class")
    fashion.add_argument(
        "--queries", type=int, default=500, metavar="N", help="query items from the test split (default 500)"
    )
    fashion.add_argument(
        "--views", type=int, default=4, metavar="N", help="index views per query item: 1..N, N <= 4 (default 4)"
    )
    fashion.add_argument(
        "--distractors", type=int, default=2000, metavar="N", help="distractor test items in the index (default 2000)"
    )
    fashion.add_argument("--seed", type=int, default=0, help="picks items and augmentations (default 0)")
    fashion.add_argument(
        "--photo-model",
        choices=["studio", "field"],
        default="studio",
        help="how query/index photos are made: studio (mild, the default) or field (colour, backdrops, mirror, "
        "rotation +-35, perspective, occluders, low resolution, strong JPEG; shares no code with training)",
    )
    fashion.add_argument(
        "--field-without",
        default="",
        metavar="STEPS",
        help="comma list of field camera steps to leave out (a diagnostic: which one costs retrieval most): "
        + ", ".join(FIELD_STEPS),
    )
    fashion.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    fashion.set_defaults(func=_fashion_mnist)
