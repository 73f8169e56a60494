"""Mid-epoch resume under DistributedDataParallel (2 gloo ranks on CPU): resuming from a checkpoint saved at
step 2 of epoch 2 ends with the uninterrupted run's weights (each rank skips its own done steps)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

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
    checkpoint_every=2,
    schedule="cosine",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, catalog: str, out: str, resume: bool) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from eproduct_core import distributed, run_folder
    from eproduct_core.train import _Trainer

    saved = run_folder.save_checkpoint

    def keep_a_copy(run_dir, state):  # the checkpoint a kill at epoch 2, steps 3-4 would leave behind
        path = saved(run_dir, state)
        if (state["epoch"], state["step"]) == (1, 2):
            shutil.copy(path, Path(out).parent / "mid-epoch.pt")
        return path

    run_folder.save_checkpoint = keep_a_copy
    trainer = _Trainer(CONFIG, catalog, Path(out), None)
    try:
        if rank == 0:
            Path(out).mkdir(parents=True, exist_ok=True)
            run_folder.write_config(out, CONFIG)
        distributed.barrier(trainer.dist)
        if resume:
            trainer.resume()
        trainer.fit()
        torch.save({"state": trainer.model.state_dict()}, Path(out).parent / f"{Path(out).name}-rank{rank}.pt")
    finally:
        distributed.shutdown(trainer.dist)


def _spawn(catalog, out: Path, resume: bool) -> None:
    mp.start_processes(
        _worker, args=(2, _free_port(), str(catalog), str(out), resume), nprocs=2, start_method="spawn", join=True
    )


def test_two_gloo_ranks_resume_mid_epoch_to_the_same_weights(tiny_catalog, tmp_path):
    _spawn(tiny_catalog, tmp_path / "straight", resume=False)
    mid = torch.load(tmp_path / "mid-epoch.pt", weights_only=True)
    assert (mid["epoch"], mid["step"]) == (1, 2)
    (tmp_path / "resumed").mkdir()
    shutil.move(tmp_path / "mid-epoch.pt", tmp_path / "resumed" / "checkpoint.pt")
    _spawn(tiny_catalog, tmp_path / "resumed", resume=True)
    for rank in (0, 1):
        a = torch.load(tmp_path / f"straight-rank{rank}.pt", weights_only=True)["state"]
        b = torch.load(tmp_path / f"resumed-rank{rank}.pt", weights_only=True)["state"]
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"rank {rank} {key}")
