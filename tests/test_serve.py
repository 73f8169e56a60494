"""`eproduct serve` over real HTTP (urllib) on 127.0.0.1: vectors, photos, manifest, settings, and every error status."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from eproduct_core.search import search
from eproduct_core.serve import SearchService, make_server
from eproduct_core.settings import SearchSettings
from tests.conftest import noisy_product_index


@pytest.fixture(scope="module")
def vector_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve") / "ix"
    index, queries, ids, truth = noisy_product_index(
        folder, seed=3, products=20, dim=32, noise=0.1, distractors=200, shard_size=64
    )
    service = SearchService(index_dir=folder, settings=SearchSettings(k=5), max_bytes=64 * 1024)
    server = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}", index, queries, truth
    server.shutdown()
    server.server_close()


def _call(url, data=None, content_type=None, method=None):
    request = urllib.request.Request(url, data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_vector_search_matches_the_core_search(vector_server):
    url, index, queries, truth = vector_server
    assert url.startswith("http://127.0.0.1:")
    status, answer = _call(f"{url}/search", json.dumps({"vector": queries[0].tolist()}).encode(), "application/json")
    assert status == 200
    expected = search(index, queries[:1], SearchSettings(k=5))[0]
    (result,) = answer["results"]
    assert result["ids"] == list(expected.ids) and len(result["ids"]) == 5
    assert np.allclose(result["distances"], expected.cosine, atol=1e-5) and result["distance"] == "cosine"
    assert set(result["ids"][:3]) == truth["q0"]  # the three photos of product 0 come first
    # A batch, with settings in the body and in the URL (the URL wins)
    body = {"vectors": queries[:3].tolist(), "settings": {"k": 7, "rerank": 0}}
    status, answer = _call(f"{url}/search?k=2&bits=32", json.dumps(body).encode(), "application/json")
    assert status == 200 and answer["settings"]["k"] == 2 and answer["settings"]["bits"] == 32
    expected = search(index, queries[:3], SearchSettings(k=2, bits=32, rerank=0))
    assert [r["ids"] for r in answer["results"]] == [list(e.ids) for e in expected]
    assert answer["results"][0]["distance"] == "code_cosine"


def test_manifest_settings_health(vector_server):
    url, index, *_ = vector_server
    status, manifest = _call(f"{url}/manifest")
    assert status == 200 and manifest == json.loads((index.path / "manifest.json").read_text())
    status, settings = _call(f"{url}/settings")
    assert status == 200 and settings["serving"]["k"] == 5 and "tuned" in settings
    status, health = _call(f"{url}/health")
    assert status == 200 and health["rows"] == index.size and health["images"] is False


@pytest.mark.parametrize(
    ("path", "data", "content_type", "method", "status", "says"),
    [
        ("/search", b"{not json", "application/json", None, 400, "not valid JSON"),
        ("/search", json.dumps({"vector": [1.0, 2.0]}).encode(), "application/json", None, 400, "32 numbers"),
        ("/search", json.dumps({"vectors": "x"}).encode(), "application/json", None, 400, "list of 1 to"),
        (
            "/search",
            json.dumps({"vector": [0.0] * 32, "settings": {"k": 0}}).encode(),
            "application/json",
            None,
            400,
            "k",
        ),
        ("/search?bits=abc", json.dumps({"vector": [0.0] * 32}).encode(), "application/json", None, 400, "bits"),
        (
            "/search",
            json.dumps({"vector": [0.0] * 32, "settings": {"speed": 1}}).encode(),
            "application/json",
            None,
            400,
            "speed",
        ),
        ("/search", b"\x89PNG not really", "image/png", None, 400, "--run"),
        ("/search", b"hello", "text/plain", None, 415, "not supported"),
        ("/search", b"x" * (64 * 1024 + 1), "application/json", None, 413, "at most 65,536"),
        ("/nowhere", None, None, None, 404, "No route /nowhere"),
        ("/search", None, None, "GET", 405, "answers POST"),
        ("/manifest", b"{}", "application/json", "POST", 405, "answers GET"),
        ("/manifest", None, None, "DELETE", 405, "answers GET"),
    ],
)
def test_errors_are_json_with_a_message(vector_server, path, data, content_type, method, status, says):
    url, *_ = vector_server
    got, answer = _call(f"{url}{path}", data, content_type, method)
    assert got == status
    assert answer["error"]["status"] == status and says in answer["error"]["message"]


def test_photo_search_with_the_workspace_run(tiny_workspace):
    import pandas as pd

    from eproduct_core import workspace as ws
    from eproduct_core.embed import embed_images, load_run
    from eproduct_core.images import load_image

    demo = ws.open_workspace(tiny_workspace / "demo", allowed=[tiny_workspace])
    name = demo.default_index
    run_dir = demo.run_dir(demo.index_info(name)["run"])
    service = SearchService(index_dir=demo.index_dir(name), settings=SearchSettings(k=10), run_dir=run_dir)
    server = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://{}:{}".format(*server.server_address[:2])
    try:
        query = pd.read_csv(demo.catalog_dir / "query.csv", dtype=str)
        data = (demo.catalog_dir / query["path"].iat[0]).read_bytes()
        vector = embed_images(load_run(run_dir, device="cpu"), [load_image(data)], service.index.kind)
        expected = list(search(service.index, np.asarray(vector, np.float32), SearchSettings(k=10))[0].ids)
        status, raw = _call(f"{url}/search", data, "image/jpeg")
        assert status == 200 and raw["results"][0]["ids"] == expected
        boundary = "eproductboundary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
                f"Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, multipart = _call(f"{url}/search", body, f"multipart/form-data; boundary={boundary}")
        assert status == 200 and multipart["results"][0]["ids"] == expected
        status, bad = _call(f"{url}/search", b"not an image at all", "application/octet-stream")
        assert status == 400 and "image" in bad["error"]["message"].lower()
    finally:
        server.shutdown()
        server.server_close()
