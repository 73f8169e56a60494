"""The product model: a backbone plus DHC heads and/or a normalized-softmax metric head.

One model can carry both heads, so one run yields the seed embedding (class probabilities) and the
metric embedding side by side. Input: float images in [0, 1], (B, 3, H, W); the model normalises them
itself with its backbone's mean/std, so callers never need to know which backbone it is.

DHC heads (as the seed report): one head per level; level l's head input is
[backbone features, level-(l-1) representation]; rep_l = ReLU(Linear(input_l)), logits_l = Linear(rep_l).
Metric head: Linear(features) -> L2-normalised embedding, scored against L2-normalised class proxies.
Title head (optional): Linear(features) -> one logit per title pseudo-attribute (`titles.py`).
Under bfloat16 autocast (`mixed_precision`) only the backbone runs in bfloat16; the heads run in float32.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild the model's layers (stored in the checkpoint as a plain dict)."""

    backbone: str
    image_size: int
    sizes: tuple[int, ...]  # classes per level (meta, level2, leaf)
    dhc: bool
    dhc_hidden: int
    metric: bool
    metric_dim: int
    metric_classes: int = 0  # proxies in the metric head (leaf classes, or training products); 0 = leaves
    title_attributes: int = 0  # outputs of the title pseudo-attribute head (mined title tokens); 0 = no head

    def to_dict(self) -> dict:
        data = asdict(self)
        data["sizes"] = list(self.sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        return cls(**{**data, "sizes": tuple(int(s) for s in data["sizes"])})

    @classmethod
    def from_config(
        cls, config, sizes: tuple[int, ...], metric_classes: int = 0, title_attributes: int = 0
    ) -> ModelSpec:
        return cls(
            backbone=config.backbone,
            image_size=config.image_size,
            sizes=tuple(int(s) for s in sizes),
            dhc=config.dhc,
            dhc_hidden=config.dhc_hidden,
            metric=config.metric,
            metric_dim=config.metric_dim,
            metric_classes=int(metric_classes),
            title_attributes=int(title_attributes),
        )


class DHCHeads(nn.Module):
    """One representation + classifier per level; each level also sees the previous level's representation."""

    def __init__(self, in_dim: int, hidden: int, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.represent = nn.ModuleList(
            nn.Linear(in_dim if level == 0 else in_dim + hidden, hidden) for level in range(len(sizes))
        )
        self.classify = nn.ModuleList(nn.Linear(hidden, size) for size in sizes)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        logits, previous = [], None
        for represent, classify in zip(self.represent, self.classify, strict=False):
            inputs = features if previous is None else torch.cat([features, previous], dim=1)
            previous = F.relu(represent(inputs))
            logits.append(classify(previous))
        return logits


class MetricHead(nn.Module):
    """Normalized softmax (Zhai & Wu 2018): an L2-normalised embedding and one proxy per leaf class."""

    proxy_leaf: torch.Tensor  # a registered buffer

    def __init__(self, in_dim: int, dim: int, n_classes: int) -> None:
        super().__init__()
        self.project = nn.Linear(in_dim, dim)
        self.proxies = nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        # leaf class of each proxy (identity for leaf proxies), so a product proxy still predicts a leaf
        self.register_buffer("proxy_leaf", torch.arange(n_classes))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = F.normalize(self.project(features).float(), dim=1)
        cosine = embedding @ F.normalize(self.proxies.float(), dim=1).t()
        return embedding, cosine


def mixed_precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context a forward pass runs in: bfloat16 on CUDA under "auto", on either device under
    "bfloat16", none under "float32" (`TrainConfig.precision`)."""
    enabled = precision == "bfloat16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


class ProductModel(nn.Module):
    """Backbone + heads. `forward` returns a dict: features, logits (per level), embedding, cosine, title_logits."""

    mean: torch.Tensor  # registered buffers: the backbone's input normalisation
    std: torch.Tensor

    def __init__(self, spec: ModelSpec, weights: str = "none") -> None:
        super().__init__()
        self.spec = spec
        backbone = build_backbone(spec.backbone, weights, spec.image_size)
        self.backbone = backbone.module
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1), persistent=False)
        self.feature_dim = backbone.dim
        self.dhc = DHCHeads(backbone.dim, spec.dhc_hidden, spec.sizes) if spec.dhc else None
        proxies = spec.metric_classes or spec.sizes[-1]
        self.metric = MetricHead(backbone.dim, spec.metric_dim, proxies) if spec.metric else None
        # title head: one logit per mined title token, trained with multi-label BCE beside the other heads
        self.title = nn.Linear(backbone.dim, spec.title_attributes) if spec.title_attributes else None

    def forward(self, images: torch.Tensor) -> dict:
        features = self.backbone((images - self.mean) / self.std).float()
        out: dict = {"features": features}
        # The heads run in float32 under any autocast: a bfloat16 cosine (8 significant bits) over the metric
        # temperature 0.05 moves a logit by up to ~0.08, and the losses read these outputs outside autocast.
        with torch.autocast(features.device.type, enabled=False):
            if self.dhc is not None:
                out["logits"] = self.dhc(features)
            if self.metric is not None:
                out["embedding"], out["cosine"] = self.metric(features)
            if self.title is not None:
                out["title_logits"] = self.title(features)
        return out

    def freeze(self, fraction: float, batchnorm: bool = False) -> None:
        """Freeze the leading `fraction` of the backbone's layers (by module order); their BatchNorms stay in eval.

        The input needs no gradient, so autograd skips backward through the frozen prefix entirely.
        """
        leaves = [m for m in self.backbone.modules() if not list(m.children()) and list(m.parameters(recurse=False))]
        count = int(round(len(leaves) * fraction))
        frozen = leaves[:count]
        if batchnorm:  # every backbone BatchNorm keeps its (pretrained) statistics
            frozen += [
                m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m not in frozen
            ]
        self.__dict__["_frozen"] = frozen  # a plain list: not registered, so not in the state dict
        for module in leaves[:count]:
            for p in module.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> ProductModel:
        super().train(mode)
        for module in self.__dict__.get("_frozen", []):
            module.eval()
        return self

    def parameter_groups(self, lr: float, backbone_lr_scale: float) -> list[dict]:
        """Optimizer groups: the trainable backbone at lr * scale (protects pretrained features), heads at lr."""
        heads = [p for name, p in self.named_parameters() if not name.startswith("backbone.")]
        groups = [{"params": heads, "lr": lr}]
        trainable = [p for p in self.backbone.parameters() if p.requires_grad]
        if backbone_lr_scale > 0 and trainable:
            groups.insert(0, {"params": trainable, "lr": lr * backbone_lr_scale})
        else:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        return groups
