"""Measuring this device's speed once (timing.py predicts from it): a few real iterations at a few sizes."""

from __future__ import annotations

import platform
import time

import torch

from .losses import CONTENT_LAYER, FINE_LAYERS, STYLE_LAYERS, gram_matrix
from .optimize import Objective, autocast_for, optimize
from ..contract.timing import Calibration, read_calibrations, remember, remember_precision, remembered_precision
from .vgg import VGG19Features

COMPOSITION_SIDES = (96, 192, 384)
"""Square sizes a composition iteration is timed at: the coarse scales' (128x80 to 512x320 at the
default working size) and a bit beyond. A line through two small sizes priced a 2560x1600 run at about
half its time on this CPU, whose cost per pixel is not constant (bf16, s per megapixel: 5.1 at 96 px,
2.2 at 192, 1.8 at 256, 3.0 at 384, 3.2 at 512)."""
DETAIL_SIDE = 512
"""The size a detail iteration is timed at: detail scales start above the working size. Beyond it the cost
per megapixel is taken as constant; on this CPU it stayed at 3.0-3.4 s from 512x512 to 2560x1600 in some
runs and rose to 5 s at the largest in others (a busy machine): measuring at a second, larger size would
cost more than the calibration's few seconds, and 2560x1600 runs were predicted at 0.96-1.02 of their time."""
ITERATIONS = 3
"""Timed iterations per size, after one that is not timed (its buffers are new). In all about 6 s on
this CPU, once."""
LEARNING_RATE = 0.5
"""After each run, the calibration moves this far (geometrically) towards the speed the run showed:
a calibration measured while the machine was busy corrects itself within a few runs."""
MIN_SECONDS_TO_LEARN = 5.0
"""Shorter runs say more about start-up noise than about the device's speed."""
BF16_MIN_GAIN = 1.25
"""On a CPU, "auto" takes bf16 only where it is at least this much faster than fp32: CPUs with AMX or
AVX-512 BF16 run it about 2x faster (benchmarks/speed.py), the others emulate it, more slowly than fp32."""
CHOICE_SIDE = 256
"""The size the two precisions are timed at for that choice: at the calibration's small sizes fixed
costs hide most of the difference."""


def precision_for(network: VGG19Features, device: torch.device, requested: str) -> str:
    """The arithmetic of a run's VGG passes: `requested`, or for "auto" bf16 where the device runs it
    faster (a CUDA GPU that has it; a CPU measured once to run it BF16_MIN_GAIN times faster), else fp32."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type != "cpu":
        return "fp32"
    key = calibration_key(device, "auto")
    chosen = remembered_precision(key)
    if chosen is None:
        chosen = faster_cpu_precision(network, device)
        remember_precision(key, chosen)
    return chosen


def faster_cpu_precision(network: VGG19Features, device: torch.device) -> str:
    """fp32 and bf16 timed side by side, alternately, the best of two each: a burst of other load on
    the machine slows both alike instead of deciding the choice."""
    seconds = {"fp32": [], "bf16": []}
    for _ in range(2):
        for precision, times in seconds.items():
            times.append(seconds_per_iteration(network, device, precision, CHOICE_SIDE))
    return "bf16" if min(seconds["fp32"]) >= BF16_MIN_GAIN * min(seconds["bf16"]) else "fp32"


def calibration_for(network: VGG19Features, device: torch.device, precision: str) -> Calibration:
    """This device's calibration from the cache, or measured now (once per device and torch version);
    either way the latest on file after this, which is the one the dialog's estimate reads."""
    key = calibration_key(device, precision)
    calibrations = read_calibrations()
    for index, calibration in enumerate(calibrations):
        if calibration.key == key:
            if index != len(calibrations) - 1:
                remember(calibration)
            return calibration
    calibration = measure(network, device, precision, key)
    remember(calibration)
    return calibration


def calibration_key(device: torch.device, precision: str) -> str:
    return f"{device.type}|{device_name(device)}|{precision}|torch {torch.__version__}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return device.type


def measure(network: VGG19Features, device: torch.device, precision: str, key: str) -> Calibration:
    def point(side: int, detail: bool = False) -> tuple[float, float]:
        return side * side / 1e6, seconds_per_iteration(network, device, precision, side, detail)
    return Calibration(key, device.type, device_name(device), tuple(point(side) for side in COMPOSITION_SIDES),
                       (point(DETAIL_SIDE, detail=True),))


def seconds_per_iteration(network: VGG19Features, device: torch.device, precision: str, side: int,
                          detail: bool = False) -> float:
    """One L-BFGS iteration's time at side x side: of a composition scale, or of a detail scale (its layers,
    and the composition anchor of a third of its size)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((1, 3, side, side), generator=generator).to(device)
    layers = FINE_LAYERS if detail else STYLE_LAYERS
    with torch.no_grad(), autocast_for(image, precision):
        features = network(image.flip(-1), set(layers) | {CONTENT_LAYER})
    anchor = image[:, :, ::3, ::3].flip(-2).contiguous() if detail else None
    objective = Objective(network, {layer: gram_matrix(features[layer]) for layer in layers},
                          features[CONTENT_LAYER], 1.0, 1.0, 1.0, precision, anchor=anchor)
    optimize(image, objective, 1, "lbfgs", 0.0, lambda iteration, loss: None)
    started = time.perf_counter()
    # optimize reads each loss back, so the device has finished when it returns.
    optimize(image, objective, ITERATIONS, "lbfgs", 0.0, lambda iteration, loss: None)
    return (time.perf_counter() - started) / ITERATIONS


def learn_from_run(calibration: Calibration, predicted: float, measured: float) -> None:
    """Move this device's calibration towards the speed a finished run showed."""
    if max(predicted, measured) < MIN_SECONDS_TO_LEARN or predicted <= 0:
        return
    remember(calibration.scaled(min(4.0, max(0.25, measured / predicted)) ** LEARNING_RATE))
