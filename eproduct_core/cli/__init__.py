"""The `eproduct` command line: one sub-module per command group, each with `register(subparsers)`.

Handlers import the heavy core modules lazily, so `eproduct search` never imports torch. A user error
(`EproductError`) prints its message without a traceback and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import EproductError

# Each module here defines register(subparsers) and sets `func` on its parsers.
COMMAND_MODULES = (
    "demo",
    "catalog",
    "evaluate",
    "submit",
    "train",
    "embed",
    "index",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eproduct", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except EproductError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
