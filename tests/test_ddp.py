"""DistributedDataParallel on CPU: 2 gloo processes train on the tiny catalog and end with identical weights."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from eproduct_core.config import TrainConfig

CONFIG = TrainConfig(
    backbone="tiny",
    image_size=32,
    epochs=2,
    batch_size=16,
    lr=3e-3,
    device="cpu",
    metric=True,
    instance_weight=0.5,
    max_train_images=96,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, catalog: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from pathlib import Path

    from eproduct_core import distributed
    from eproduct_core.train import _Trainer

    trainer = _Trainer(CONFIG, catalog, Path(out), None)
    try:
        if rank == 0:
            Path(out).mkdir(parents=True, exist_ok=True)
        distributed.barrier(trainer.dist)
        seen = sorted(trainer.sampler.__iter__())
        trainer.fit()
        torch.save({"state": trainer.model.state_dict(), "seen": seen}, Path(out).parent / f"rank{rank}.pt")
    finally:
        distributed.shutdown(trainer.dist)


def test_two_gloo_ranks_end_with_identical_weights(tiny_catalog, tmp_path):
    out = tmp_path / "run"
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tiny_catalog), str(out)), nprocs=2, start_method="spawn", join=True
    )
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a["seen"] and b["seen"] and not set(a["seen"]) & set(b["seen"])  # each rank trains on its own shard
    for key in a["state"]:
        torch.testing.assert_close(a["state"][key], b["state"][key], msg=key)
    start = torch.load(out / "checkpoint.pt", weights_only=True)  # only rank 0 wrote the run folder
    assert start["epoch"] == 2
    for key in a["state"]:
        torch.testing.assert_close(start["model_state"][key], a["state"][key], msg=key)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
