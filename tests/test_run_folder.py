"""run_folder.py: the run folder's files written atomically and read back, with clear errors."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from eproduct_core import run_folder
from eproduct_core.config import TrainConfig
from eproduct_core.errors import EproductError


def test_config_round_trip_and_missing_config(tmp_path):
    config = TrainConfig(epochs=3, backbone="tiny")
    run_folder.write_config(tmp_path, config)
    assert run_folder.read_config(tmp_path) == config
    with pytest.raises(EproductError, match="no config.json"):
        run_folder.read_config(tmp_path / "nowhere")


def test_metrics_append_replaces_a_resumed_epoch(tmp_path):
    assert run_folder.read_metrics(tmp_path) == []
    for epoch in (1, 2, 3):
        run_folder.append_metrics(tmp_path, {"epoch": epoch, "train_loss": float(epoch)})
    run_folder.append_metrics(tmp_path, {"epoch": 2, "train_loss": 9.0})  # resumed after epoch 1
    assert run_folder.read_metrics(tmp_path) == [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 9.0}]
    (tmp_path / run_folder.METRICS).write_text('{"epoch": 1}\nnot json\n', encoding="utf-8")
    with pytest.raises(EproductError, match="line 2"):
        run_folder.read_metrics(tmp_path)


def test_class_accuracy_round_trip_and_errors(tmp_path):
    table = pd.DataFrame(
        {
            "level": ["leaf", "leaf"],
            "class": ["a", "NA"],
            "train_count": [3, 0],
            "val_count": [1, 0],
            "accuracy": [1.0, None],
        }
    )
    run_folder.write_class_accuracy(tmp_path, table)
    back = run_folder.read_class_accuracy(tmp_path)
    assert list(back["class"]) == ["a", "NA"]  # a class named NA stays a string
    assert back["accuracy"].isna().tolist() == [False, True]
    with pytest.raises(EproductError, match="does not exist"):
        run_folder.read_class_accuracy(tmp_path / "nowhere")
    (tmp_path / run_folder.CLASS_ACCURACY).write_text("level,class\nleaf,a\n", encoding="utf-8")
    with pytest.raises(EproductError, match="lacks columns"):
        run_folder.read_class_accuracy(tmp_path)


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    import torch

    state = {"model_state": {"w": torch.ones(2)}, "epoch": 1}
    run_folder.save_checkpoint(tmp_path, state)
    assert run_folder.has_checkpoint(tmp_path)
    loaded = run_folder.load_checkpoint(tmp_path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model_state"]["w"], torch.ones(2))
    assert run_folder.load_checkpoint(tmp_path / run_folder.CHECKPOINT)["epoch"] == 1  # the file itself
    with pytest.raises(EproductError, match="eproduct train --out"):
        run_folder.load_checkpoint(tmp_path / "empty")
    (tmp_path / run_folder.CHECKPOINT).write_bytes(b"truncated")
    with pytest.raises(EproductError, match="Cannot read checkpoint"):
        run_folder.load_checkpoint(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [run_folder.CHECKPOINT]


def test_reading_a_run_folder_needs_no_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from eproduct_core import run_folder, run_cache, class_analysis\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_embed_does_not_import_train():
    code = "import sys\nimport eproduct_core.embed\nassert 'eproduct_core.train' not in sys.modules, 'embed imports train'\n"
    subprocess.run([sys.executable, "-c", code], check=True)
