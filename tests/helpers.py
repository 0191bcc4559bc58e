"""Shared pieces of the engine tests: our own VGG19 distances (not a timer or a stub), and a server of a test's own."""

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylize_core.contract import client
from stylize_core.engine.api import cached_network, to_tensor
from stylize_core.contract.schedule import size_with_pixels
from stylize_core.engine.imageio import load_picture, resize_rgb
from stylize_core.engine.losses import CONTENT_LAYER, STYLE_LAYERS, gram_matrix
from stylize_core.engine.optimize import Objective, autocast_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONTENT = EXAMPLES / "tubingen.jpg"
STYLE = EXAMPLES / "starry_night.jpg"


def small(path, long_side):
    image = Image.open(path).convert("RGB")
    image.thumbnail((long_side, long_side), Image.LANCZOS)
    return image


def png_bytes(path, long_side) -> bytes:
    """A picture made small, as the bytes of a PNG file: what a client sends a server."""
    stream = io.BytesIO()
    small(path, long_side).save(stream, format="PNG")
    return stream.getvalue()


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
    """A server process of the test's own, the address it wrote (token included) and its log."""

    def __init__(self, *arguments: str, environment: dict | None = None):
        self.log_file = tempfile.NamedTemporaryFile(prefix="stylize-serve-", suffix=".log")
        self.process = subprocess.Popen([sys.executable, "-m", "stylize_core", "serve", *arguments],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log_file,
                                        text=True, env={**os.environ, **(environment or {})})
        line = self.process.stdout.readline()
        assert line, "the server did not start: " + self.log()[-2000:]
        self.ready = json.loads(line)
        assert self.ready["stage"] == "ready"
        self.address = address_from_ready(self.ready)

    def log(self) -> str:
        """What the server wrote on stderr so far: its one line per request's step."""
        if self.log_file.closed:
            return self.final_log
        return Path(self.log_file.name).read_text(errors="replace")

    def ping(self) -> dict:
        return client.ping(self.address)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        self.process.wait(30)
        if not self.log_file.closed:
            self.final_log = self.log()
            self.log_file.close()


def address_from_ready(ready: dict) -> client.Address:
    """The full address of a server from its "ready" line: the printed one has no token; a TCP
    listener's, token included, is in the private file the line names."""
    address_file = (ready.get("address_files") or [None])[0]
    if address_file:
        return client.read_address_file(Path(address_file))
    return client.parse_address(ready["addresses"][0])
