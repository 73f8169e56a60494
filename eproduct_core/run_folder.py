"""The run folder written by `eproduct train`: its file names, and reading and writing each file.

Layout (see ARCHITECTURE.md, "Run folder"):
  config.json          the resolved TrainConfig
  metrics.jsonl        one JSON object per finished epoch
  class_accuracy.csv   level, class, train_count, val_count, accuracy (last epoch)
  checkpoint.pt        tensors and plain values only (`torch.load(weights_only=True)`)

Every write is atomic (`atomic.py`), so a killed run leaves the previous epoch's files intact.
Torch is imported only by the two checkpoint functions, so evaluation and the app can read a
run's config, metrics and class accuracy without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .atomic import atomic_path, write_text_atomic
from .config import TrainConfig, load_config
from .errors import EproductError

if TYPE_CHECKING:
    import torch

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
CLASS_ACCURACY = "class_accuracy.csv"
ACCURACY_COLUMNS = ["level", "class", "train_count", "val_count", "accuracy"]


def checkpoint_path(run_dir: str | Path) -> Path:
    """RUN/checkpoint.pt (a path to the file itself is returned unchanged)."""
    path = Path(run_dir)
    return path / CHECKPOINT if path.is_dir() or path.suffix != ".pt" else path


def has_checkpoint(run_dir: str | Path) -> bool:
    return checkpoint_path(run_dir).is_file()


def require_checkpoint(run_dir: str | Path) -> Path:
    """The run's checkpoint file, or an `EproductError` saying how to make one."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise EproductError(
            f"No checkpoint at {path}. Is {path.parent} a run folder? Train one with `eproduct train --out {path.parent}`."
        )
    return path


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A run checkpoint (tensors and plain values only), or an `EproductError` saying what to do."""
    import torch

    path = require_checkpoint(run_dir)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EproductError(
            f"Cannot read checkpoint {path} ({reason}). It is truncated or not an eproduct checkpoint; "
            "re-run `eproduct train` for this run."
        ) from err
    if not isinstance(state, dict):
        raise EproductError(f"{path} is not an eproduct checkpoint (no state dict). Re-run `eproduct train`.")
    return state


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write RUN/checkpoint.pt atomically (the previous one stays until the new one is complete)."""
    import torch

    path = checkpoint_path(run_dir)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def write_config(run_dir: str | Path, config: TrainConfig) -> Path:
    return write_text_atomic(Path(run_dir) / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")


def read_config(run_dir: str | Path) -> TrainConfig:
    """The run's resolved TrainConfig (config.json), or an `EproductError`."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise EproductError(f"{run_dir} has no {CONFIG}. Is it a run folder from `eproduct train`?")
    return load_config(path)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of metrics.jsonl ([] when there are none yet); a corrupt line is an error."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise EproductError(
                f"{path} line {number} is not JSON ({err}). Delete the line or re-run training."
            ) from err
        if not isinstance(record, dict):
            raise EproductError(f"{path} line {number} is not a JSON object. Delete the line or re-run training.")
        records.append(record)
    return records


def append_metrics(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Add one epoch's record to metrics.jsonl, dropping records of that epoch or later (a resumed run)."""
    epoch = int(record["epoch"])
    kept = [r for r in read_metrics(run_dir) if int(r.get("epoch", 0)) < epoch]
    lines = [json.dumps(r) for r in [*kept, record]]
    return write_text_atomic(Path(run_dir) / METRICS, "\n".join(lines) + "\n")


def write_class_accuracy(run_dir: str | Path, table: pd.DataFrame) -> Path:
    path = Path(run_dir) / CLASS_ACCURACY
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def read_class_accuracy(run_dir: str | Path) -> pd.DataFrame:
    """The run's class_accuracy.csv (level, class, train_count, val_count, accuracy) with numeric columns."""
    path = Path(run_dir) / CLASS_ACCURACY
    if not path.is_file():
        raise EproductError(f"{path} does not exist. Is {run_dir} a finished run folder from `eproduct train`?")
    try:
        frame = pd.read_csv(path, dtype={"level": str, "class": str}, keep_default_na=False, na_values=[""])
    except (ValueError, UnicodeDecodeError) as err:
        raise EproductError(f"Cannot read {path} ({err}); re-run `eproduct train` to rewrite it.") from err
    missing = [c for c in ACCURACY_COLUMNS if c not in frame.columns]
    if missing:
        raise EproductError(f"{path} lacks columns {missing}; re-run `eproduct train` to rewrite it.")
    for column in ("train_count", "val_count", "accuracy"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
