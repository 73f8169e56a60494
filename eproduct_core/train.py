"""The training loop: `train(config, catalog_dir, out_dir, resume=False, progress=None) -> Path`.

Writes a run folder (see ARCHITECTURE.md): config.json, metrics.jsonl (one line per epoch),
class_accuracy.csv and checkpoint.pt (tensors and plain values only; saved atomically every epoch,
so `resume=True` continues after a kill from the last finished epoch). CUDA when present (bf16
autocast, channels_last), CPU otherwise; under torchrun, DistributedDataParallel with one data shard
per rank, and only rank 0 writes files. Sampling and augmentation are seeded per epoch, so a resumed
run sees the same batches an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed, losses, run_folder
from .catalog import read_catalog
from .config import TrainConfig
from .data import CatalogImages, EpochSampler, augment, split_train_val, to_float
from .errors import EproductError
from .model import ModelSpec, ProductModel
from .progress import Progress
from .taxonomy import Taxonomy
from .validation import class_accuracy_table, level_accuracy, predict_dataset

log = logging.getLogger(__name__)


def lr_factor(step: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rate at `step` of `total` (a pure function, nanoGPT style)."""
    if schedule == "constant" or total <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def compute_loss(
    outputs: dict,
    labels: torch.Tensor,
    metric_labels: torch.Tensor,
    parents: list[torch.Tensor],
    config: TrainConfig,
    n_views: int,
) -> dict[str, torch.Tensor]:
    """All loss terms for one batch; 'total' sums them.

    labels (B, L) class ids per level, metric_labels (B,) proxy ids; outputs cover n_views * B images
    (the views of one image are B rows apart).
    """
    labels_all = labels.repeat(n_views, 1)
    metric_all = metric_labels.repeat(n_views)
    parts: dict[str, torch.Tensor] = {}
    if "logits" in outputs:
        parts["layer"] = losses.layer_loss(outputs["logits"], labels_all, config.alphas)
        if config.dependence == "faithful":
            parts["dependence"] = losses.dependence_faithful(
                outputs["logits"], labels_all, parents, config.betas, config.ploss
            )
        elif config.dependence == "soft":
            parts["dependence"] = losses.dependence_soft(outputs["logits"], parents, config.betas)
    if "cosine" in outputs:
        parts["metric"] = config.metric_weight * losses.normalized_softmax(
            outputs["cosine"], metric_all, config.temperature
        )
        if n_views > 1 and config.instance_weight > 0:
            view_a, view_b = outputs["embedding"].chunk(2)
            parts["instance"] = config.instance_weight * losses.nt_xent(view_a, view_b, config.instance_temperature)
    terms = list(parts.values())
    total = terms[0] if terms else torch.zeros((), device=labels.device)
    for term in terms[1:]:
        total = total + term
    parts["total"] = total
    return parts


def _metric_labels(config: TrainConfig, frame, labels: np.ndarray, taxonomy: Taxonomy) -> tuple[np.ndarray, np.ndarray]:
    """(proxy id per training row, leaf of each proxy): leaf classes, or products when asked and available."""
    if config.metric_labels == "product" and "product_id" in frame.columns:
        codes, _ = pd.factorize(frame["product_id"].astype(str))
        proxy_leaf = np.zeros(codes.max() + 1, np.int64)
        proxy_leaf[codes] = labels[:, -1]
        return codes.astype(np.int64), proxy_leaf
    if config.metric_labels == "product":
        log.warning("metric_labels=product but train.csv has no product_id column: using leaf classes")
    return labels[:, -1].copy(), np.arange(taxonomy.sizes[-1], dtype=np.int64)


class _Trainer:
    """State of one training run (kept small: setup, one epoch, validation, saving)."""

    def __init__(
        self, config: TrainConfig, catalog_dir: str | Path, out_dir: str | Path, progress: Progress | None
    ) -> None:
        self.config, self.out, self.progress = config, Path(out_dir), progress
        self.dist, self.device = distributed.init(config.device)
        torch.manual_seed(config.seed)
        catalog = read_catalog(catalog_dir)
        self.taxonomy = Taxonomy.from_frame(catalog.train)
        train_frame, val_frame = split_train_val(catalog, config.val_fraction, config.max_train_images, config.seed)
        self.train_labels = self.taxonomy.encode(train_frame)
        self.val_labels = self.taxonomy.encode(val_frame)
        cache = config.workers == 0
        self.train_set = CatalogImages(catalog, train_frame, config.image_size, cache=cache)
        self.val_set = CatalogImages(catalog, val_frame, config.image_size, cache=cache)
        self.parents_np = [np.zeros(0, np.int64)] + [
            self.taxonomy.parent_array(level) for level in range(1, len(self.taxonomy.levels))
        ]
        self.parents = [torch.as_tensor(p, device=self.device) for p in self.parents_np]
        self.metric_labels, proxy_leaf = _metric_labels(config, train_frame, self.train_labels, self.taxonomy)
        self.spec = ModelSpec.from_config(config, self.taxonomy.sizes, len(proxy_leaf))
        self.model = ProductModel(self.spec, config.weights)
        if self.model.metric is not None:
            self.model.metric.proxy_leaf.copy_(torch.as_tensor(proxy_leaf))
        self.model.freeze(config.freeze_fraction, config.freeze_bn)
        self.model = self.model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.groups = self.model.parameter_groups(config.lr, config.backbone_lr_scale)
        for group in self.groups:
            group["base_lr"] = group["lr"]
        opt_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_class(self.groups, lr=config.lr, weight_decay=config.weight_decay)
        self.net = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.enabled
            else self.model
        )
        self.sampler: EpochSampler | DistributedSampler
        if config.balanced or not self.dist.enabled:
            self.sampler = EpochSampler(
                self.train_labels[:, -1], config.balanced, config.seed, self.dist.rank, self.dist.world
            )
        else:
            self.sampler = DistributedSampler(
                self.train_set, self.dist.world, self.dist.rank, shuffle=True, seed=config.seed
            )
        self.loader = DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            sampler=self.sampler,
            num_workers=config.workers,
            drop_last=len(self.sampler) >= config.batch_size,
            persistent_workers=config.workers > 0,
        )
        self.start_epoch = 0

    def resume(self) -> None:
        if not run_folder.has_checkpoint(self.out):
            log.info("no checkpoint in %s: starting from epoch 1", self.out)
            return
        path = run_folder.checkpoint_path(self.out)
        state = run_folder.load_checkpoint(path, self.device)
        if state.get("model_spec") != self.spec.to_dict():
            raise EproductError(
                f"{path} was trained with a different model ({state.get('model_spec')}); use a new --out folder."
            )
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.start_epoch = int(state["epoch"])
        log.info("resuming %s after epoch %d", self.out, self.start_epoch)

    def _report(self, fraction: float, message: str) -> None:
        if self.progress is not None and self.dist.main:
            self.progress(min(1.0, fraction), message)

    def run_epoch(self, epoch: int, bar) -> tuple[float, int]:
        config, net = self.config, self.net
        net.train()
        self.sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 7919 + epoch * 104729 + self.dist.rank)
        steps, total_steps = len(self.loader), len(self.loader) * config.epochs
        loss_sum, seen = 0.0, 0
        for step, (images, index, valid) in enumerate(self.loader):
            global_step = epoch * steps + step
            factor = lr_factor(global_step, total_steps, config.schedule)
            for group in self.groups:
                group["lr"] = group["base_lr"] * factor
            keep = valid.clone()
            if not keep.any():
                keep[0] = True
            rows = index[keep].numpy()
            labels = torch.as_tensor(self.train_labels[rows], device=self.device)
            metric_labels = torch.as_tensor(self.metric_labels[rows], device=self.device)
            batch = to_float(images[keep]).to(self.device, non_blocking=True)
            n_views = 2 if config.metric and config.instance_weight > 0 else 1
            mode = "light" if config.augment == "none" and n_views > 1 else config.augment  # two views must differ
            views = [augment(batch, mode, generator) for _ in range(n_views)]
            inputs = torch.cat(views)
            if self.device.type == "cuda":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                outputs = net(inputs)
            parts = compute_loss(outputs, labels, metric_labels, self.parents, config, n_views)
            self.optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            self.optimizer.step()
            loss_sum += float(parts["total"].detach()) * len(labels)
            seen += len(labels)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(1, seen):.3f}")
            self._report(
                (global_step + 1) / max(1, total_steps), f"epoch {epoch + 1}/{config.epochs}, step {step + 1}/{steps}"
            )
        return loss_sum / max(1, seen), seen

    def validate_and_save(self, epoch: int, train_loss: float, images_per_s: float, seconds: float) -> dict:
        predicted, valid = predict_dataset(
            self.model, self.val_set, self.device, max(64, self.config.batch_size), self.parents_np
        )
        labels = self.val_labels[valid] if len(valid) else self.val_labels
        predicted = predicted[valid] if len(valid) else predicted
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_acc": level_accuracy(predicted, labels, self.taxonomy.levels),
            "images_per_s": images_per_s,
            "seconds": seconds,
            "val_images": int(len(labels)),
        }
        table = class_accuracy_table(self.taxonomy, predicted, labels, self.train_labels)
        run_folder.write_class_accuracy(self.out, table)
        run_folder.append_metrics(self.out, record)
        run_folder.save_checkpoint(
            self.out,
            {
                "model_state": self.model.state_dict(),
                "optimizer_state": self.optimizer.state_dict(),
                "epoch": epoch + 1,
                "config": self.config.to_dict(),
                "taxonomy": self.taxonomy.to_dict(),
                "model_spec": self.spec.to_dict(),
                "bad_train_files": sorted(self.train_set.paths[i] for i in self.train_set.bad),
            },
        )
        return record

    def fit(self) -> None:
        from tqdm.auto import tqdm

        config = self.config
        total = len(self.loader) * (config.epochs - self.start_epoch)
        bar = tqdm(total=total, desc="train", unit="step", disable=not self.dist.main or total == 0)
        for epoch in range(self.start_epoch, config.epochs):
            start = time.perf_counter()
            train_loss, seen = self.run_epoch(epoch, bar)
            seconds = time.perf_counter() - start
            distributed.sync_buffers(self.model, self.dist)
            ips = seen * self.dist.world / max(seconds, 1e-9)
            if self.dist.main:
                record = self.validate_and_save(epoch, train_loss, ips, seconds)
                log.info(
                    "epoch %d: loss %.4f, val acc %s, %.1f images/s", epoch + 1, train_loss, record["val_acc"], ips
                )
            distributed.barrier(self.dist)
        bar.close()


def train(
    config: TrainConfig,
    catalog_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Train a model on a catalog into the run folder `out_dir`; returns the folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EproductError(f"--out {out} is a file; give a folder for the run (new, or one to --resume).")
    trainer = _Trainer(config, catalog_dir, out, progress)
    try:
        if not resume and run_folder.has_checkpoint(out):
            raise EproductError(f"{out} already holds a run. Use --resume to continue it, or a new --out folder.")
        if trainer.dist.main:
            out.mkdir(parents=True, exist_ok=True)
            run_folder.write_config(out, config)
        distributed.barrier(trainer.dist)
        if resume:
            trainer.resume()
        trainer.fit()
        if progress is not None and trainer.dist.main:
            progress(1.0, "done")
    finally:
        distributed.shutdown(trainer.dist)
    return out
