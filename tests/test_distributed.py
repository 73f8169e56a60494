"""distributed.py: device choice (CPU here), and a single process needs no process group."""

from __future__ import annotations

import pytest
import torch

from eproduct_core import distributed
from eproduct_core.errors import EproductError


def test_auto_picks_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert distributed.resolve_device("auto").type == expected
    assert distributed.resolve_device("cpu") == torch.device("cpu")


def test_bad_devices_are_user_errors():
    with pytest.raises(EproductError, match="Unknown device 'tpu'"):
        distributed.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EproductError, match="no CUDA GPU"):
            distributed.resolve_device("cuda")


def test_one_process_is_rank_0_of_1_without_a_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info, device = distributed.init("cpu")
    assert (info.rank, info.world, info.enabled, info.main) == (0, 1, False, True) and device.type == "cpu"
    distributed.barrier(info)  # no-ops without a process group
    distributed.shutdown(info)
