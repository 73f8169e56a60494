"""`eproduct catalog ...`: validate a catalog folder, or make one (synthetic demo, Fashion-MNIST)."""

from __future__ import annotations

import argparse


def _validate(args: argparse.Namespace) -> int:
    from ..catalog import validate_catalog

    check = "none" if args.skip_files else ("sample" if args.sample else "all")
    problems = validate_catalog(args.dir, check_files=check, sample=args.sample or 0)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.dir}")
        return 1
    print(f"{args.dir}: catalog is valid")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    catalog = subparsers.add_parser("catalog", help="validate or create a catalog folder")
    commands = catalog.add_subparsers(dest="catalog_command", required=True)

    validate = commands.add_parser("validate", help="report every problem with a catalog folder")
    validate.add_argument("dir", help="catalog folder")
    files = validate.add_mutually_exclusive_group()
    files.add_argument("--sample", type=int, metavar="N", help="open only N random images per split")
    files.add_argument("--skip-files", action="store_true", help="do not open image files at all")
    validate.set_defaults(func=_validate)
