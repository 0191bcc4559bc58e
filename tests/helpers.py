"""Shared pieces of the engine tests: our own VGG19 distances (not a timer or a stub), and a server of a test's own."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylize_core import client
from stylize_core.engine import cached_network, to_tensor
from stylize_core.pyramid import size_with_pixels
from stylize_core.imageio import load_picture, resize_rgb
from stylize_core.losses import CONTENT_LAYER, STYLE_LAYERS, gram_matrix
from stylize_core.optimize import Objective, autocast_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONTENT = EXAMPLES / "tubingen.jpg"
STYLE = EXAMPLES / "starry_night.jpg"


def small(path, long_side):
    image = Image.open(path).convert("RGB")
    image.thumbnail((long_side, long_side), Image.LANCZOS)
    return image


def rgb_of(image):
    return load_picture(image).rgb


@torch.no_grad()
def style_distance(output_rgb, style_rgb):
    """Mean relative Gram distance over relu1_1..relu5_1, style resized to the output's pixel count."""
    network = cached_network(None, "max", "cpu")
    height, width = output_rgb.shape[:2]
    style_size = size_with_pixels((style_rgb.shape[1], style_rgb.shape[0]), width * height)
    out = network(to_tensor(output_rgb, torch.device("cpu")), set(STYLE_LAYERS))
    sty = network(to_tensor(resize_rgb(style_rgb, style_size), torch.device("cpu")), set(STYLE_LAYERS))
    return float(np.mean([((gram_matrix(out[l]) - gram_matrix(sty[l])).norm() / gram_matrix(sty[l]).norm()).item()
                          for l in STYLE_LAYERS]))


@torch.no_grad()
def content_distance(output_rgb, content_rgb):
    network = cached_network(None, "max", "cpu")
    height, width = output_rgb.shape[:2]
    a = network(to_tensor(output_rgb, torch.device("cpu")), {CONTENT_LAYER})[CONTENT_LAYER]
    b = network(to_tensor(resize_rgb(content_rgb, (width, height)), torch.device("cpu")), {CONTENT_LAYER})[CONTENT_LAYER]
    return ((a - b).pow(2).sum() / b.pow(2).sum()).item()


@torch.no_grad()
def example_objective(size, device, precision="fp32"):
    """Our Objective for the example photo after the example painting at size (width, height),
    with the photo as a tensor on device."""
    network = cached_network(None, "max", str(device))
    content = to_tensor(resize_rgb(rgb_of(small(CONTENT, max(size))), size), device)
    style = to_tensor(resize_rgb(rgb_of(small(STYLE, max(size))), size), device)
    with autocast_for(content, precision):
        targets = {layer: gram_matrix(f) for layer, f in network(style, set(STYLE_LAYERS)).items()}
        content_target = network(content, {CONTENT_LAYER})[CONTENT_LAYER]
    return Objective(network, targets, content_target, 1.0, 1.0, 1.0, precision), content


class Served:
    """A server process of the test's own and the address it printed."""

    def __init__(self, *arguments: str, environment: dict | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "stylize_core", "serve", *arguments],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env={**os.environ, **(environment or {})})
        line = self.process.stdout.readline()
        assert line, "the server did not start: " + self.process.stderr.read()[-2000:]
        ready = json.loads(line)
        assert ready["stage"] == "ready"
        self.address = client.parse_address(ready["addresses"][0])

    def ping(self) -> dict:
        return client.ping(self.address)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        self.process.wait(30)
