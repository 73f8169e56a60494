"""The training loop: `train(config, catalog_dir, out_dir, resume=False, progress=None) -> Path`.

Writes a run folder (see ARCHITECTURE.md): config.json, metrics.jsonl (one line per epoch),
class_accuracy.csv and checkpoint.pt (tensors and plain values only; saved atomically every epoch and,
with `checkpoint_every` N, every N steps with an intervals.jsonl record), so `resume=True` continues
after a kill from the last checkpoint, mid-epoch included. CUDA when present, CPU otherwise (bfloat16
autocast per `precision`), channels_last on both; under torchrun, DistributedDataParallel with one data shard
per rank, and only rank 0 writes files. Sampling is seeded per epoch and skips the steps already done, and
augmentation is seeded per step, so a resumed run sees exactly the batches an uninterrupted one would.
The progress display shows images/s and an ETA; TensorBoard events go to RUN/tensorboard/ when the
tensorboard package is installed. DataLoader workers prefetch (`workers`, `prefetch_factor`) and persist.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed, losses, run_folder, titles
from .atomic import write_text_atomic
from .catalog import read_catalog
from .config import TrainConfig
from .data import CatalogImages, EpochSampler, ResumableSampler, augment, shared_tint, split_train_val, to_float
from .errors import EproductError
from .model import ModelSpec, ProductModel, mixed_precision
from .progress import Progress
from .taxonomy import Taxonomy
from .validation import class_accuracy_table, level_accuracy, predict_dataset

log = logging.getLogger(__name__)
INTERVALS = "intervals.jsonl"  # one record per mid-epoch checkpoint (--checkpoint-every)


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
    title_targets: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All loss terms for one batch; 'total' sums them.

    labels (B, L) class ids per level, metric_labels (B,) proxy ids, title_targets (B, T) 0/1 title
    attributes (or None); outputs cover n_views * B images (the views of one image are B rows apart).
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
        parts["metric"] = config.metric_weight * _metric_loss(outputs["cosine"], metric_all, config)
        if n_views > 1 and config.instance_weight > 0:
            if config.instance_loss == "supcon":
                instance = losses.supervised_contrastive(outputs["embedding"], metric_all, config.instance_temperature)
            else:
                view_a, view_b = outputs["embedding"].chunk(2)
                instance = losses.nt_xent(view_a, view_b, config.instance_temperature)
            parts["instance"] = config.instance_weight * instance
    if "title_logits" in outputs and title_targets is not None and config.title_weight > 0:
        parts["title"] = config.title_weight * losses.title_bce(
            outputs["title_logits"], title_targets.repeat(n_views, 1)
        )
    terms = list(parts.values())
    total = terms[0] if terms else torch.zeros((), device=labels.device)
    for term in terms[1:]:
        total = total + term
    parts["total"] = total
    return parts


def _metric_loss(cosine: torch.Tensor, labels: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    if config.metric_loss == "proxy-anchor":
        return losses.proxy_anchor(cosine, labels)
    margin = config.metric_margin if config.metric_loss == "cosface" else 0.0
    return losses.cosine_margin_loss(cosine, labels, config.temperature, margin)


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


def _title_targets(config: TrainConfig, frame: pd.DataFrame) -> np.ndarray:
    """(rows, attributes) 0/1 title pseudo-attributes when title_weight > 0 (else (rows, 0))."""
    if config.title_weight <= 0 or "title" not in frame.columns:
        return np.zeros((len(frame), 0), np.float32)
    titles_list = frame["title"].fillna("").astype(str).tolist()
    vocabulary = titles.mine_attributes(titles_list, config.title_min_count)
    log.info("title head: %d attributes mined from %d titles", len(vocabulary), len(titles_list))
    return titles.attribute_matrix(titles_list, vocabulary)


class _Clock:
    """Images/s and the ETA of this session's steps (a resumed run measures from its restart)."""

    def __init__(self) -> None:
        self.start, self.steps, self.images = time.perf_counter(), 0, 0

    def tick(self, images: int, steps_left: int) -> tuple[float, float]:
        self.steps += 1
        self.images += images
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return self.images / elapsed, steps_left * elapsed / self.steps


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def append_interval(run_dir: Path, record: dict) -> Path:
    """Add a checkpoint interval's record to RUN/intervals.jsonl, dropping records at or after its step."""
    path = run_dir / INTERVALS
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [line for line in lines if line.strip() and json.loads(line)["global_step"] < record["global_step"]]
    return write_text_atomic(path, "\n".join([*kept, json.dumps(record)]) + "\n")


def tensorboard_writer(run_dir: Path):
    """A SummaryWriter on RUN/tensorboard/ when the tensorboard package is installed, else None."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


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
        self.title_targets = _title_targets(config, train_frame)
        self.spec = ModelSpec.from_config(config, self.taxonomy.sizes, len(proxy_leaf), self.title_targets.shape[1])
        self.model = ProductModel(self.spec, config.weights)
        if self.model.metric is not None:
            self.model.metric.proxy_leaf.copy_(torch.as_tensor(proxy_leaf))
        self.model.freeze(config.freeze_fraction, config.freeze_bn)
        # channels_last on every device: on CPU it made a Lite0 step at 96 px ~1.5x faster (oneDNN), on CUDA too
        self.model = self.model.to(self.device).to(memory_format=torch.channels_last)
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
        base: EpochSampler | DistributedSampler
        if config.balanced or not self.dist.enabled:
            base = EpochSampler(self.train_labels[:, -1], config.balanced, config.seed, self.dist.rank, self.dist.world)
        else:
            base = DistributedSampler(self.train_set, self.dist.world, self.dist.rank, shuffle=True, seed=config.seed)
        self.sampler = ResumableSampler(base)
        drop_last = len(base) >= config.batch_size
        self.steps = len(base) // config.batch_size if drop_last else math.ceil(len(base) / config.batch_size)
        self.loader = DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            sampler=self.sampler,
            num_workers=config.workers,
            drop_last=drop_last,
            persistent_workers=config.workers > 0,
            prefetch_factor=config.prefetch_factor if config.workers > 0 else None,
            pin_memory=self.device.type == "cuda",
        )
        self.start_epoch, self.start_step = 0, 0  # resume point: finished epochs, steps done in the next one
        self.resumed_totals = (0.0, 0, 0.0)  # loss sum, images and seconds of the resumed epoch before the stop
        self.clock = _Clock()
        self.tensorboard = None

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
        self.start_epoch, self.start_step = int(state["epoch"]), int(state.get("step", 0))
        if self.start_step and int(state.get("steps_per_epoch", self.steps)) != self.steps:
            raise EproductError(
                f"{path} was saved mid-epoch with {state.get('steps_per_epoch')} steps per epoch; this run has "
                f"{self.steps} (another catalog, batch size or world size). Resume with the same settings."
            )
        self.resumed_totals = (
            float(state.get("epoch_loss_sum", 0.0)),
            int(state.get("epoch_images", 0)),
            float(state.get("epoch_seconds", 0.0)),
        )
        log.info("resuming %s at epoch %d, step %d", self.out, self.start_epoch + 1, self.start_step)

    def _report(self, fraction: float, message: str) -> None:
        if self.progress is not None and self.dist.main:
            self.progress(min(1.0, fraction), message)

    def run_epoch(self, epoch: int, bar) -> tuple[float, int, float]:
        """Train one epoch (from the resume step when resuming it); (mean loss, images, seconds)."""
        config, net = self.config, self.net
        net.train()
        first = self.start_step if epoch == self.start_epoch else 0
        self.sampler.set_epoch(epoch, first * config.batch_size)
        steps, total_steps = self.steps, self.steps * config.epochs
        loss_sum, seen, seconds_before = self.resumed_totals if first else (0.0, 0, 0.0)
        started = interval_start = time.perf_counter()
        interval_seen = 0
        for offset, (images, index, valid) in enumerate(self.loader):
            step = first + offset
            global_step = epoch * steps + step
            # seeded per step, so a run resumed mid-epoch augments the next batches exactly as an uninterrupted one
            generator = torch.Generator().manual_seed(
                ((config.seed * 7919 + epoch) * 1_000_003 + step) * 64 + self.dist.rank
            )
            factor = lr_factor(global_step, total_steps, config.schedule)
            for group in self.optimizer.param_groups:  # (load_state_dict replaces the group dicts)
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
            if mode == "robust" and "tint" in config.augment_families.split(","):
                batch = shared_tint(batch, generator)  # one colour per product, kept by all its views
            views = [augment(batch, mode, generator, config.augment_families) for _ in range(n_views)]
            inputs = torch.cat(views).contiguous(memory_format=torch.channels_last)
            with mixed_precision(self.device, config.precision):
                outputs = net(inputs)
            titles_batch = torch.as_tensor(self.title_targets[rows], device=self.device)
            parts = compute_loss(outputs, labels, metric_labels, self.parents, config, n_views, titles_batch)
            self.optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            self.optimizer.step()
            loss = float(parts["total"].detach())
            loss_sum += loss * len(labels)
            seen += len(labels)
            interval_seen += len(labels)
            rate, eta = self.clock.tick(len(labels) * self.dist.world, total_steps - global_step - 1)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(1, seen):.3f}", img_s=f"{rate:.0f}")
            if self.tensorboard is not None:
                self.tensorboard.add_scalar("train/loss", loss, global_step + 1)
                self.tensorboard.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], global_step + 1)
            self._report(
                (global_step + 1) / max(1, total_steps),
                f"epoch {epoch + 1}/{config.epochs}, step {step + 1}/{steps}, {rate:.0f} img/s, ETA {_duration(eta)}",
            )
            done = step + 1
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done < steps:
                now = time.perf_counter()
                interval = {
                    "epoch": epoch + 1,
                    "step": done,
                    "global_step": global_step + 1,
                    "train_loss": loss_sum / max(1, seen),
                    "images_per_s": interval_seen * self.dist.world / max(now - interval_start, 1e-9),
                    "seconds": now - interval_start,
                    "eta_s": eta,
                }
                if self.dist.main:
                    self.save_mid_epoch(epoch, done, (loss_sum, seen, seconds_before + now - started), interval)
                interval_start, interval_seen = time.perf_counter(), 0
        return loss_sum / max(1, seen), seen, seconds_before + time.perf_counter() - started

    def _state(self, finished_epochs: int, step: int = 0, totals: tuple[float, int, float] | None = None) -> dict:
        loss_sum, images, seconds = totals or (0.0, 0, 0.0)
        return {
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "epoch": finished_epochs,
            "step": step,  # steps done in epoch `finished_epochs + 1` (0: saved at an epoch's end)
            "steps_per_epoch": self.steps,
            "epoch_loss_sum": loss_sum,
            "epoch_images": images,
            "epoch_seconds": seconds,
            "config": self.config.to_dict(),
            "taxonomy": self.taxonomy.to_dict(),
            "model_spec": self.spec.to_dict(),
            "bad_train_files": sorted(self.train_set.paths[i] for i in self.train_set.bad),
        }

    def save_mid_epoch(self, epoch: int, step: int, totals: tuple[float, int, float], interval: dict) -> None:
        """A resumable checkpoint after `step` steps of `epoch` (0-based), and its interval's record."""
        run_folder.save_checkpoint(self.out, self._state(epoch, step, totals))
        append_interval(self.out, interval)
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("train/images_per_s", interval["images_per_s"], interval["global_step"])
        log.info("checkpoint at epoch %d step %d: %.1f images/s", epoch + 1, step, interval["images_per_s"])

    def validate_and_save(self, epoch: int, train_loss: float, images_per_s: float, seconds: float) -> dict:
        predicted, valid = predict_dataset(
            self.model,
            self.val_set,
            self.device,
            max(64, self.config.batch_size),
            self.parents_np,
            self.config.precision,
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
        run_folder.save_checkpoint(self.out, self._state(epoch + 1))
        if self.tensorboard is not None:
            step = (epoch + 1) * self.steps
            self.tensorboard.add_scalar("epoch/train_loss", train_loss, step)
            self.tensorboard.add_scalar("epoch/images_per_s", images_per_s, step)
            for level, value in record["val_acc"].items():
                self.tensorboard.add_scalar(f"epoch/val_acc_{level}", value, step)
            self.tensorboard.flush()
        return record

    def fit(self) -> None:
        from tqdm.auto import tqdm

        config = self.config
        total = self.steps * (config.epochs - self.start_epoch) - self.start_step
        bar = tqdm(total=total, desc="train", unit="step", disable=not self.dist.main or total <= 0)
        self.tensorboard = tensorboard_writer(self.out) if self.dist.main else None
        self.clock = _Clock()  # images/s and ETA from the first step of this session
        try:
            self._epochs(bar)
        finally:
            bar.close()
            if self.tensorboard is not None:
                self.tensorboard.close()

    def _epochs(self, bar) -> None:
        for epoch in range(self.start_epoch, self.config.epochs):
            train_loss, seen, seconds = self.run_epoch(epoch, bar)
            distributed.sync_buffers(self.model, self.dist)
            ips = seen * self.dist.world / max(seconds, 1e-9)
            if self.dist.main:
                record = self.validate_and_save(epoch, train_loss, ips, seconds)
                log.info(
                    "epoch %d: loss %.4f, val acc %s, %.1f images/s", epoch + 1, train_loss, record["val_acc"], ips
                )
            distributed.barrier(self.dist)


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
