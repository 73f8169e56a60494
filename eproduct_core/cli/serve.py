"""`eproduct serve`: the HTTP JSON search API (eproduct_core/serve.py) over an index folder or a workspace's index."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def _service(args: argparse.Namespace):
    from ..errors import EproductError
    from ..serve import SearchService
    from .search_flags import search_settings

    base = None
    run = args.run
    if args.workspace:
        from ..workspace import open_workspace

        workspace = open_workspace(args.workspace)
        name = args.index or workspace.default_index
        if name not in workspace.indexes:
            raise EproductError(f"Workspace {workspace.path} has no index {name!r}; it has {workspace.indexes}.")
        index_dir = workspace.index_dir(name)
        base = workspace.search_settings(name)
        if run is None and workspace.index_info(name).get("run"):
            run = str(workspace.run_dir(workspace.index_info(name)["run"]))
    elif args.index:
        index_dir = args.index
    else:
        raise EproductError("Give --index INDEX_DIR, or --workspace WS [--index NAME].")
    settings = search_settings(args, base)
    return SearchService(index_dir=index_dir, settings=settings, run_dir=run, max_bytes=args.max_bytes)


def _serve(args: argparse.Namespace) -> int:
    from ..serve import make_server

    service = _service(args)
    server = make_server(service, args.host, args.port)
    port = server.server_address[1]
    print(
        f"eproduct serve: http://{args.host}:{port}/ (index {service.index_dir}, {service.index.size:,} rows)",
        flush=True,
    )
    print(
        "  GET /health /manifest /settings · POST /search (JSON vector, image bytes or multipart 'image')", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..serve import DEFAULT_HOST, DEFAULT_PORT, MAX_BYTES
    from .search_flags import add_search_flags

    serve = subparsers.add_parser("serve", help="an HTTP JSON API: POST an image or a vector, get the top-k ids")
    serve.add_argument("--index", help="index folder, or with --workspace the name of one of its indexes")
    serve.add_argument("--workspace", help="workspace folder: serve its index (default: its default index)")
    serve.add_argument("--run", help="training run folder, to embed posted photos (default: the index's run)")
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only)"
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    serve.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="largest request body accepted (413 above)")
    add_search_flags(serve, "the workspace's recorded settings, else the index's own")
    serve.set_defaults(func=_serve)
