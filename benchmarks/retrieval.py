"""Retrieval against today's ANN libraries: build seconds, memory, p50/p95, batched q/s and recall@10.

One run = one vector distribution (benchmarks/vectors.py: clusters, latent, fashion, seed) and one
query set. Every method (this project's index and each peer) is built once (timed, 2 threads where
the library takes a thread count), its search-time knob is swept on the query set, and the cheapest
setting reaching recall@10 >= --target is kept (by the sweep's measured time; if none reaches it, the
most accurate). Then all kept settings are measured in --rounds interleaved rounds (a slow spell of the
shared machine hits every row alike): p50/p95 one query at a time on one thread, and queries/s of the
whole set split over --threads Python threads (each library called with one thread of its own).
Figures are medians over the rounds. Recall@10 is against exact cosine over the float32 vectors.
Memory: the process's resident-set growth over building (peers) or opening and loading (ours)
each index, after gc; allocator slack counts against everyone alike.

This project's rows: "tuned" takes `eproduct_core.tuning.tune` (sample: held-out index rows, never
the benchmark's queries) as it is; "swept" sweeps the same stage family on the queries as the peers
are swept; "default" is settings.py's constants (with --centre, each of our rows
is a centred index: unit rows minus their mean are hashed); "+ tables" adds the prefix-bucket tables (lsh_tables.py,
their build time and memory added to the index's) and sweeps probes per table x re-rank depth; "+ partitions"
adds the k-means partitions (partitions.py, build time and memory added alike), tuned by the tuner (which then
also weighs the flat scan: its pick is the row) and swept over probed lists x shortlist ratio x re-rank depth
(the swept rows sweep the tuner's shortlist ratios too). --tuner-ab adds rows tuned the old way, on one sample
without the check on a second (tuning.tune(check=False)), so the check's price is measured in the same rounds.
With --residual, "+ residual codes" is a second index
with partitions and residual codes (residual.py: stages 1-2 rank the probed rows by an inner-product estimate from
sign codes of each row's offset from its centroid), tuned, and swept over probed lists x candidates per re-ranked
row (8, 16, 32) x re-rank depth.

    python benchmarks/retrieval.py --dist latent --n 200000 --dim 512
    python benchmarks/retrieval.py --dist fashion --n 210000 --peers all
    python benchmarks/retrieval.py --dist clusters --n 1100000 --peers hnsw,ivfpq --out /tmp/ann/r.md
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one BLAS thread per query; set before numpy loads

import argparse  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import vectors  # noqa: E402
from machine import cpu_line  # noqa: E402

from eproduct_core import lsh_tables, partitions, residual, search, search_kernels, tuning  # noqa: E402
from eproduct_core.index import build_index, open_index  # noqa: E402
from eproduct_core.settings import (  # noqa: E402
    DEFAULT_BITS,
    DEFAULT_CANDIDATES,
    DEFAULT_PROBE_BITS,
    DEFAULT_RERANK,
    DEFAULT_SHORTLIST,
    SearchSettings,
)

PEERS = ("hnsw", "ivfpq", "rabitq", "scann", "hnswlib", "usearch")
EF = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
K_FACTOR = (2, 4, 8, 16, 32, 64, 128)
MAX_SWEEP_S = 60.0  # a sweep point slower than this for the whole query set ends its group
BUILD_THREADS = 2
ADD_BLOCK = 1 << 18  # rows per faiss add() call


def rss() -> int:
    """Resident bytes of this process after gc and malloc_trim (freed memory handed back, so it is not reused
    unseen by the next index)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f[:10], t)) / 10 for f, t in zip(found, truth, strict=True)]))


class Method:
    """A built index with a list of search settings (`knobs`) and a search call per setting."""

    name = ""
    build_s = 0.0
    memory = 0

    def knobs(self) -> list[list]:
        """Groups of settings, each ordered from cheapest to dearest (the sweep stops a group at the target)."""
        raise NotImplementedError

    def search(self, q: np.ndarray, knob) -> np.ndarray:  # (len(q), 10) rows
        raise NotImplementedError

    def label(self, knob) -> str:
        return str(knob)


def _built(method: Method, build, *args) -> Method:
    before, start = rss(), time.perf_counter()
    build(*args)
    method.build_s = time.perf_counter() - start
    method.memory = rss() - before
    return method


def _timed_tune(index, check: bool = True) -> tuple:
    """(tuning.tune's result at the 0.95 target, its seconds); `check` False: the one-sample tuner, for an A/B."""
    start = time.perf_counter()
    result = tuning.tune(index, target=0.95, check=check)
    return result, time.perf_counter() - start


class Ours(Method):
    def __init__(
        self,
        x: np.ndarray,
        work: Path,
        variant: str,
        shared: Ours | None = None,
        centre: bool = False,
        bits: int = DEFAULT_BITS,
        lists: int | None = None,
    ):
        self.centre = shared.centre if shared is not None else centre
        self.name, self.variant = f"eproduct LSH ({variant}{', centred' if self.centre else ''})", variant
        if shared is not None:  # the same opened index, another way of choosing its settings
            self.index, self.build_s, self.memory, self.tuned = (
                shared.index,
                shared.build_s,
                shared.memory,
                shared.tuned,
            )
            if variant == "tables":  # + the prefix-bucket tables (lsh_tables.py), built from the stored codes
                before, start = rss(), time.perf_counter()
                lsh_tables.build_tables(self.index)
                self.tables = lsh_tables.tables_of(self.index)
                self.build_s += time.perf_counter() - start
                self.memory += rss() - before
                shape = f"{self.tables.tables} x {self.tables.key_bits}-bit keys"
                self.name = f"eproduct LSH + tables ({shape}, multi-probe), swept"
            if variant.startswith("partitions"):  # + k-means partitions (partitions.py), built once
                if hasattr(shared, "lists"):
                    self.lists, self.build_s, self.memory = shared.lists, shared.build_s, shared.memory
                else:
                    before, start = rss(), time.perf_counter()
                    self.lists = partitions.build_partitions(self.index, lists)[0].lists
                    self.build_s += time.perf_counter() - start
                    self.memory += rss() - before
                self.name = f"eproduct LSH + {self.lists} partitions (swept)"
            if variant in ("partitions", "partitions-one-sample"):  # the tuner, which now sees them too
                self.tuned, self.tune_s = _timed_tune(self.index, check=variant == "partitions")
                how = "tuned" if variant == "partitions" else "tuned on one sample, no check"
                self.name = f"eproduct LSH + {self.lists} partitions ({how})"
            if variant == "one-sample":  # the tuner before its check (tuning.tune(check=False)), for an A/B
                self.tuned, self.tune_s = _timed_tune(self.index, check=False)
                self.name = f"eproduct LSH (tuned on one sample, no check{', centred' if self.centre else ''})"
            return
        start = time.perf_counter()
        build_index(x, None, work / "ours", bits=bits, workers=BUILD_THREADS, centre=centre)
        self.build_s = time.perf_counter() - start
        search_kernels.prepare()  # compile the kernels first: their code is not the index's memory
        before = rss()
        self.index = open_index(work / "ours").warm()
        search.search(self.index, x[:2], SearchSettings())
        self.memory = rss() - before
        self.tuned, self.tune_s = _timed_tune(self.index)

    def knobs(self) -> list:
        if self.variant == "default":
            return [[SearchSettings()]]
        if self.variant in ("tuned", "one-sample", "partitions", "partitions-one-sample"):
            return [[self.tuned.settings]]
        if self.variant == "tables":
            probes = (1, 2, 4, 8, 16, 32, 64, 128, 256)
            return [
                [SearchSettings(k=10, rerank=r, shortlist=6 * r, table_probes=p) for p in probes]
                for r in (16, 32, 64, 128, 256)
            ]
        ratios = (tuning.SHORTLIST_PER_RERANK, *tuning.SHORTLIST_RATIOS)
        if self.variant == "partitions-swept":
            probes = [p for p in tuning.PARTITION_LADDER if 2 <= p < self.lists]
            return [
                [tuning.stage_settings(r, 256, 10, None, p, ratio) for r in tuning.LADDER if r >= 8]
                for p in probes
                for ratio in ratios
            ]
        probe, bits = self.tuned.settings.probe_bits, self.tuned.settings.bits
        return [
            [tuning.stage_settings(r, probe, 10, bits, 0, ratio) for r in tuning.LADDER if r >= 8] for ratio in ratios
        ]

    def search(self, q, knob):
        return np.stack([_pad(r.rows) for r in search.search(self.index, q, knob)])

    def label(self, s):
        if s.table_probes:
            return f"{s.table_probes} probes per table, shortlist {s.shortlist}, re-rank {s.rerank}"
        lists = f"{s.partition_probes} of {self.lists} lists, " if s.partition_probes else ""
        if s == SearchSettings():
            return (
                f"defaults: probe {DEFAULT_PROBE_BITS} b, candidates {DEFAULT_CANDIDATES}, "
                f"shortlist {DEFAULT_SHORTLIST}, re-rank {DEFAULT_RERANK}"
            )
        searched = f"{s.bits} of {self.index.bits} b, " if s.bits and s.bits < self.index.bits else ""
        return (
            f"{lists}{searched}probe {s.probe_bits} b, candidates {s.candidates}, shortlist {s.shortlist}, "
            f"re-rank {s.rerank}"
        )


class OursResidual(Ours):
    """Our index with partitions and residual codes (eproduct_core/residual.py): its own folder, since an index
    with residual codes ranks every partition search by them."""

    RATIOS = (8, 16, 32)  # candidates per re-ranked row swept (the shortlist is unused on this path)

    def __init__(
        self, x: np.ndarray, work: Path, variant: str, shared: OursResidual | None = None, lists=None, **build
    ):
        self.variant, self.centre = variant, build.get("centre", False) if shared is None else shared.centre
        if shared is not None:
            self.index, self.build_s, self.memory, self.tuned, self.lists = (
                shared.index,
                shared.build_s,
                shared.memory,
                shared.tuned,
                shared.lists,
            )
            if variant == "one-sample":  # the tuner before its check, for an A/B
                self.tuned, self.tune_s = _timed_tune(self.index, check=False)
        else:
            search_kernels.prepare()
            start = time.perf_counter()
            build_index(x, None, work / "ours-residual", workers=BUILD_THREADS, **build)
            built = open_index(work / "ours-residual")
            self.lists = partitions.build_partitions(built, lists)[0].lists
            residual.build_residual(built)
            self.build_s = time.perf_counter() - start
            del built
            before = rss()  # as for our other index: what opening and loading it takes, not the build's slack
            self.index = open_index(work / "ours-residual").warm()
            search.search(self.index, x[:2], SearchSettings(partition_probes=1))
            self.memory = rss() - before
            self.tuned, self.tune_s = _timed_tune(self.index)
        centred = ", centred" if self.centre else ""
        how = "tuned on one sample, no check" if variant == "one-sample" else variant
        self.name = f"eproduct LSH + {self.lists} partitions + residual codes ({how}{centred})"

    def knobs(self) -> list:
        if self.variant in ("tuned", "one-sample"):
            return [[self.tuned.settings]]
        probes = [p for p in tuning.PARTITION_LADDER if 2 <= p < self.lists] + [self.lists]
        return [
            [
                SearchSettings(
                    k=10, probe_bits=256, candidates=ratio * r, shortlist=ratio * r, rerank=r, partition_probes=p
                )
                for r in tuning.LADDER
                if r >= 8
            ]
            for p in probes
            for ratio in self.RATIOS
        ]

    def label(self, s):
        return f"{s.partition_probes} of {self.lists} lists, probe {s.probe_bits} b, candidates {s.candidates}, re-rank {s.rerank}"


def _pad(rows: np.ndarray) -> np.ndarray:
    out = np.full(10, -1, dtype=np.int64)
    out[: min(10, len(rows))] = rows[:10]
    return out


class FaissHNSW(Method):
    def __init__(self, x):
        import faiss

        self.name, self.faiss = "faiss IndexHNSWFlat (M=32, efConstruction=40)", faiss
        faiss.omp_set_num_threads(BUILD_THREADS)
        self.index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        _built(self, self.index.add, x)
        faiss.omp_set_num_threads(1)

    def knobs(self):
        return [list(EF)]

    def search(self, q, ef):
        return self.index.search(q, 10, params=self.faiss.SearchParametersHNSW(efSearch=ef))[1]

    def label(self, ef):
        return f"efSearch {ef}"


class FaissIVF(Method):
    """IVF with a fast-scan PQ or RaBitQ code, refined by exact distances on float16 copies."""

    def __init__(self, x, code: str):
        import faiss

        self.faiss, dim = faiss, x.shape[1]
        self.nlist = 1 << max(6, int(round(np.log2(4 * np.sqrt(len(x))))))
        # fast-scan PQ: 4-bit codes over sub-vectors of ~4 dims; the sub-vector count must divide dim (1002: 167)
        subvectors = max(m for m in range(1, dim // 4 + 1) if dim % m == 0)
        spec = f"PQ{subvectors}x4fs" if code == "pq" else "RaBitQ"
        self.rabitq = code != "pq"
        self.name = f"faiss IVF{self.nlist},{spec},Refine(SQfp16)"
        faiss.omp_set_num_threads(BUILD_THREADS)
        self.index = faiss.index_factory(dim, f"IVF{self.nlist},{spec},Refine(SQfp16)", faiss.METRIC_INNER_PRODUCT)
        train = x[np.random.default_rng(0).choice(len(x), min(len(x), 40 * self.nlist), replace=False)]

        def build():  # float32 in blocks: 10M float16 rows converted at once would not fit beside the others
            self.index.train(np.asarray(train, dtype=np.float32))
            for start in range(0, len(x), ADD_BLOCK):
                self.index.add(np.asarray(x[start : start + ADD_BLOCK], dtype=np.float32))

        _built(self, build)
        faiss.omp_set_num_threads(1)

    def knobs(self):
        return [[(p, f) for p in NPROBE if p <= self.nlist] for f in K_FACTOR]

    def search(self, q, knob):
        nprobe, factor = knob
        f = self.faiss
        base = f.IVFRaBitQSearchParameters(nprobe=nprobe) if self.rabitq else f.SearchParametersIVF(nprobe=nprobe)
        params = f.IndexRefineSearchParameters(k_factor=float(factor), base_index_params=base)
        return self.index.search(q, 10, params=params)[1]

    def label(self, knob):
        return f"nprobe {knob[0]}, k_factor {knob[1]}"


class ScaNN(Method):
    def __init__(self, x):
        import scann

        self.leaves = 1 << max(6, int(round(np.log2(2 * np.sqrt(len(x))))))
        self.name = f"ScaNN (tree {self.leaves} leaves, AH 2-d, reorder)"

        def build():
            self.index = (
                scann.scann_ops_pybind.builder(x, 10, "dot_product")
                .set_n_training_threads(BUILD_THREADS)
                .tree(self.leaves, 8, training_sample_size=min(len(x), 100_000))
                .score_ah(2, anisotropic_quantization_threshold=0.2)
                .reorder(100)
                .build()
            )

        _built(self, build)

    def knobs(self):
        return [[(leaves, r) for leaves in NPROBE if leaves <= self.leaves] for r in (20, 40, 80, 160, 320)]

    def search(self, q, knob):
        leaves, reorder = knob
        return self.index.search_batched(q, 10, leaves_to_search=leaves, pre_reorder_num_neighbors=reorder)[0]

    def label(self, knob):
        return f"leaves_to_search {knob[0]}, reorder {knob[1]}"


class Hnswlib(Method):
    def __init__(self, x):
        import hnswlib

        self.name = "hnswlib (M=16, ef_construction=100)"
        self.index = hnswlib.Index(space="ip", dim=x.shape[1])

        def build():
            self.index.init_index(max_elements=len(x), M=16, ef_construction=100, random_seed=0)
            self.index.add_items(x, num_threads=BUILD_THREADS)

        _built(self, build)

    def knobs(self):
        return [list(EF)]

    def search(self, q, ef):
        self.index.set_ef(ef)  # one setting for the whole object: the interleaved rounds set it before each use
        return self.index.knn_query(q, k=10, num_threads=1)[0].astype(np.int64)

    def label(self, ef):
        return f"ef {ef}"


class USearch(Method):
    def __init__(self, x):
        from usearch.index import Index

        self.name = "USearch (f16, connectivity 16, expansion_add 128)"
        self.index = Index(ndim=x.shape[1], metric="ip", dtype="f16", connectivity=16, expansion_add=128)
        _built(self, lambda: self.index.add(np.arange(len(x)), x, threads=BUILD_THREADS))

    def knobs(self):
        return [list(EF)]

    def search(self, q, ef):
        self.index.expansion_search = ef
        found = self.index.search(q, 10, threads=1)
        return np.asarray(found.keys, dtype=np.int64).reshape(len(q), -1)

    def label(self, ef):
        return f"expansion_search {ef}"


def sweep(method: Method, q: np.ndarray, truth: np.ndarray, target: float) -> tuple:
    """(knob, its recall) of the fastest knob reaching `target` (else the most accurate), timing each batch."""
    results = []
    for group in method.knobs():
        first = None
        for knob in group:
            start = time.perf_counter()
            found = method.search(q, knob)
            results.append((time.perf_counter() - start, recall(found, truth), knob))
            first = results[-1][0] if first is None else first
            if results[-1][1] >= target:
                break
            reached = [r[0] for r in results if r[1] >= target]
            spent = results[-1][0]
            if (reached and spent > min(reached)) or spent > MAX_SWEEP_S or (spent > 100 * first and spent > 5.0):
                break  # dearer than a setting that reached the target, or far too slow still short: cannot win
    good = [r for r in results if r[1] >= target]
    best = min(good, key=lambda r: r[0]) if good else max(results, key=lambda r: r[1])
    return best[2], best[1]


def measure(method: Method, knob, q: np.ndarray, threads: int) -> tuple[float, float, float, np.ndarray]:
    """p50 ms, p95 ms (one query at a time), batched q/s over `threads` threads, and the rows found."""
    times, found = [], []
    for query in q:
        start = time.perf_counter()
        found.append(method.search(query[None, :], knob)[0])
        times.append(time.perf_counter() - start)
    parts = np.array_split(q, threads)
    if isinstance(method, Hnswlib | USearch):
        method.search(q[:1], knob)  # the knob lives on the object; threads below share it
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda part: method.search(part, knob), parts))
    qps = len(q) / (time.perf_counter() - start)
    return float(np.median(times) * 1e3), float(np.percentile(times, 95) * 1e3), qps, np.stack(found)


def make_peer(peer: str, x: np.ndarray) -> Method:
    """Build one peer (a name of PEERS) on `x`, timed."""
    makers = {
        "hnsw": FaissHNSW,
        "ivfpq": lambda v: FaissIVF(v, "pq"),
        "rabitq": lambda v: FaissIVF(v, "rabitq"),
        "scann": ScaNN,
        "hnswlib": Hnswlib,
        "usearch": USearch,
    }
    return makers[peer](x)


def make_methods(
    x: np.ndarray,
    work: Path,
    peers: list[str],
    log,
    tables: bool = True,
    centre: bool = False,
    bits: int = DEFAULT_BITS,
    with_partitions: bool = True,
    with_residual: bool = False,
    lists: int | None = None,
    tuner_ab: bool = False,
) -> list[Method]:
    tuned = Ours(x, work, "tuned", centre=centre, bits=bits)
    log(f"ours: build {tuned.build_s:.1f} s, tune {tuned.tune_s:.1f} s -> {tuning.describe(tuned.tuned.estimate())}")
    methods: list[Method] = [tuned, Ours(x, work, "swept", tuned), Ours(x, work, "default", tuned)]
    if tuner_ab:  # before the partitions are built: the flat index's tuner, as the checked row's
        methods.append(Ours(x, work, "one-sample", tuned))
        log(f"{methods[-1].name}: tuned in {methods[-1].tune_s:.1f} s (checked: {tuned.tune_s:.1f} s)")
    if tables:
        methods.append(Ours(x, work, "tables", tuned))
        log(f"{methods[-1].name}: tables built in {methods[-1].build_s - tuned.build_s:.1f} s")
    if with_partitions:
        parts = Ours(x, work, "partitions", tuned, lists=lists)
        log(
            f"{parts.name}: built in {parts.build_s - tuned.build_s:.1f} s, tuned in {parts.tune_s:.1f} s -> "
            f"{parts.label(parts.tuned.settings)}; {tuning.describe(parts.tuned.estimate())}"
        )
        methods += [parts, Ours(x, work, "partitions-swept", parts)]
        if tuner_ab:
            methods.append(Ours(x, work, "partitions-one-sample", parts))
            log(f"{methods[-1].name}: tuned in {methods[-1].tune_s:.1f} s -> {parts.label(methods[-1].tuned.settings)}")
    if with_residual:
        res = OursResidual(x, work, "tuned", lists=lists, centre=centre, bits=bits)
        log(
            f"{res.name}: built in {res.build_s:.1f} s, tuned in {res.tune_s:.1f} s -> "
            f"{res.label(res.tuned.settings)}; {tuning.describe(res.tuned.estimate())}"
        )
        methods += [res, OursResidual(x, work, "swept", res)]
        if tuner_ab:
            methods.append(OursResidual(x, work, "one-sample", res))
            log(f"{methods[-1].name}: tuned in {methods[-1].tune_s:.1f} s -> {res.label(methods[-1].tuned.settings)}")
    for peer in peers:
        method = make_peer(peer, x)
        log(f"{method.name}: build {method.build_s:.1f} s, memory {method.memory / len(x):.0f} B/item")
        methods.append(method)
    return methods


def run(args: argparse.Namespace, log) -> str:
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    x, q = vectors.make(args.dist, args.n, args.dim, args.queries, args.seed)
    truth = vectors.exact_neighbours(x, q)
    log(f"data {x.shape} + exact truth: {time.perf_counter() - t0:.0f} s")
    work = Path(tempfile.mkdtemp(prefix="eproduct-bench-", dir=args.workdir))
    try:
        methods = make_methods(
            x,
            work,
            args.peers,
            log,
            tables=not args.no_tables,
            centre=args.centre,
            bits=args.bits,
            with_partitions=not args.no_partitions,
            with_residual=args.residual,
            lists=args.lists,
            tuner_ab=args.tuner_ab,
        )
        chosen = []
        for method in methods:
            knob, r = sweep(method, q, truth, args.target)
            chosen.append(knob)
            log(f"{method.name}: {method.label(knob)} -> recall@10 {r:.3f}")
        measured: list[list] = [[] for _ in methods]
        for round_ in range(args.rounds):
            for method, knob, runs in zip(methods, chosen, measured, strict=True):
                runs.append(measure(method, knob, q, args.threads))
            log(f"round {round_ + 1}/{args.rounds} done")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(args, x, methods, chosen, measured, truth, load_start)


def report(args, x, methods, chosen, measured, truth, load_start) -> str:
    tuned = methods[0].tuned
    lines = [
        f"{args.dist}: n = {len(x):,}, dim = {x.shape[1]}, {args.queries} queries, top-10, target recall@10 "
        f">= {args.target}; p50/p95 one query at a time on one thread, q/s over {args.threads} threads; medians "
        f"of {args.rounds} interleaved rounds; builds on {BUILD_THREADS} threads; load average {load_start:.1f} at "
        f"the start, {os.getloadavg()[0]:.1f} at the end. {cpu_line()}.",
        f"Tuner (held-out index rows, not these queries): {tuning.describe(tuned.estimate())}.",
        "",
        "| method | setting (cheapest at the target) | build s | memory B/item | p50 ms | p95 ms | q/s | recall@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, knob, runs in zip(methods, chosen, measured, strict=True):
        p50, p95, qps = (statistics.median(run[j] for run in runs) for j in range(3))
        lines.append(
            f"| {method.name} | {method.label(knob)} | {method.build_s:.1f} | {method.memory / len(x):,.0f} | "
            f"{p50:.2f} | {p95:.2f} | {qps:,.0f} | {recall(runs[0][3], truth):.3f} |"
        )
    ran = ", ".join(m.name for m in methods if not isinstance(m, Ours)) or "none"
    lines += ["", f"Peers that ran: {ran}.", f"Rerun: `python benchmarks/retrieval.py {' '.join(sys.argv[1:])}`"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", choices=vectors.DISTRIBUTIONS, default="latent", help="vector distribution")
    parser.add_argument("--n", type=int, default=200_000, help="index rows (fashion: at most its cache)")
    parser.add_argument("--dim", type=int, default=512, help="dimension (fashion: 1280 always; seed: 1002)")
    parser.add_argument("--queries", type=int, default=500, help="queries")
    parser.add_argument("--peers", default="all", help=f"comma list of {PEERS}, 'all' or 'none'")
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 each method's setting must reach")
    parser.add_argument("--threads", type=int, default=2, help="threads for the batched q/s")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument("--workdir", default=None, help="where our temporary index goes (default: system temp)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--no-tables", action="store_true", help="leave out our prefix-bucket tables row")
    parser.add_argument("--no-partitions", action="store_true", help="leave out our k-means partitions rows")
    parser.add_argument(
        "--lists", type=int, default=None, help="k-means lists of our partitions (default: partitions.py's)"
    )
    parser.add_argument("--centre", action="store_true", help="build our index with --centre (index.py)")
    parser.add_argument(
        "--residual", action="store_true", help="add our index with partitions + residual codes (residual.py)"
    )
    parser.add_argument("--bits", type=int, default=DEFAULT_BITS, help="code bits our index stores")
    parser.add_argument(
        "--tuner-ab", action="store_true", help="add rows tuned on one sample without the check (the tuner's cost)"
    )
    args = parser.parse_args()
    args.peers = list(PEERS) if args.peers == "all" else [] if args.peers == "none" else args.peers.split(",")
    unknown = sorted(set(args.peers) - set(PEERS))
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; choose from {PEERS}")

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    table = run(args, log)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
