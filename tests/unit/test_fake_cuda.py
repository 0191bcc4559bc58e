"""The CUDA code path without a GPU: the engine runs on *fake* CUDA tensors (torch FakeTensorMode).

Fake tensors carry shape, dtype, device and memory format but no data, and run no
kernels, so the engine's CUDA branches execute here on the CPU in a second or two:
device planning, the cuDNN flag, channels-last weights and activations, autocast
(features in bf16/fp16, Grams and losses in float32), tiling, Adam, and L-BFGS past
its history. A device or dtype mismatch raises just as it would on a GPU.

Values cannot be read from a fake tensor, which is what makes the read-back check
possible: every read of a CUDA value (float(), int(), .item(), bool(), .tolist(),
a copy to the CPU) is recorded, and the run must read exactly one value per
iteration, the loss, one iteration late (the loop queues iteration i + 1 before it
waits for the loss of iteration i). The recipe is ../shared/notes/fake-cuda.md (beside the checkout).

Not covered (needs a real GPU, see tests/unit/test_gpu.py and benchmarks/gpu_check.sh):
numerics, speed, memory, cuDNN autotuning, the OOM retry, and autograd's real
backward, which is emulated here (zero gradients of each leaf's dtype and device).
Everything patched is patched through pytest's monkeypatch or undone in a finally
block, and the engine's caches (which would hold fake networks) are emptied before
and after each test, so no other test sees any of it.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import stylize_core
from stylize_core.engine.api import stylize_picture
from stylize_core.engine.imageio import Picture
from stylize_core.contract.progress import Progress
from stylize_core.contract.settings import Settings
from stylize_core.engine.vgg import VGG19Features

fake_tensor = pytest.importorskip("torch._subclasses.fake_tensor")
FakeTensor, FakeTensorMode = fake_tensor.FakeTensor, fake_tensor.FakeTensorMode

REAL_CUDA = torch.cuda.is_available()
"""Taken before any patching. Where a real GPU is present, the fake convolutions ask it which
memory format they would use, so the bf16 channels-last check is only meaningful there."""
PACKAGE_DIR = os.path.dirname(os.path.abspath(stylize_core.__file__)) + os.sep
AUTOCAST_FILE = os.path.join("torch", "amp", "autocast_mode.py")
LBFGS_HISTORY = getattr(sys.modules.get("stylize_core.engine.optimize"), "LBFGS_HISTORY", 20)
FEATURE_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                 "auto": torch.bfloat16}  # auto = bf16 on a CUDA GPU that has it (ours says it has)
READS = {torch.Tensor.__float__: "float", torch.Tensor.__int__: "int", torch.Tensor.__index__: "index",
         torch.Tensor.__bool__: "bool", torch.Tensor.item: "item", torch.Tensor.tolist: "tolist"}
NOT_WRITES = {"requires_grad_"}
MATMULS = {torch.Tensor.__matmul__, torch.matmul, torch.mm, torch.Tensor.mm, torch.Tensor.matmul}


def is_optimised_image(tensor) -> bool:
    """The image being optimised (a leaf (1, 3, H, W) that requires grad) or a view of it."""
    if not isinstance(tensor, torch.Tensor):
        return False
    base = tensor._base if tensor._base is not None else tensor
    return base.is_leaf and base.requires_grad and base.dim() == 4 and tuple(base.shape[:2]) == (1, 3)


def writes_optimised_image(func, args) -> bool:
    name = getattr(func, "__name__", "")
    if not name.endswith("_") or name.endswith("__") or name in NOT_WRITES or not args:
        return False
    target = args[0]
    return any(map(is_optimised_image, target)) if isinstance(target, (list, tuple)) else is_optimised_image(target)


def picture(width: int, height: int, seed: int) -> Picture:
    return Picture(np.random.default_rng(seed).random((height, width, 3), dtype=np.float32))


class Recorder:
    """What a run did, in order. tokens: B = a backward pass, S = the optimiser writing the
    image (consecutive B or S count once: one B per tile, several in-place ops per step),
    F = the loss read back (a float32 scalar on cuda), P = an "optimize" progress event,
    R = any other read or copy of a CUDA value to the host."""

    def __init__(self):
        self.tokens: list[str] = []
        self.reads: list[tuple[str, str, torch.dtype, tuple]] = []
        self.progress: list[Progress] = []
        self.network_inputs: list[tuple[str, torch.dtype, tuple, bool]] = []
        """(device, dtype, shape, optimised): optimised = the image (or a tile of it) whose
        gradient is taken, not a style or content target."""
        self.convs: list[dict] = []
        self.features: list[dict[str, tuple[torch.dtype, str]]] = []
        self.grams: list[tuple[torch.dtype, str, tuple]] = []
        self.backward_roots: list[tuple[torch.dtype, str, tuple]] = []
        self.losses_read = 0

    def token(self, token: str) -> None:
        if not (token in "BS" and self.tokens and self.tokens[-1] == token):
            self.tokens.append(token)

    def on_progress(self, event: Progress) -> None:
        if event.stage == "optimize":
            self.progress.append(event)
            self.token("P")

    def read(self, name: str, tensor: torch.Tensor):
        """A stand-in for the value the engine asked for, and a note of the read."""
        self.reads.append((name, tensor.device.type, tensor.dtype, tuple(tensor.shape)))
        if tensor.device.type == "cuda":
            if name in ("float", "item") and tensor.dim() == 0:
                self.token("F")
                self.losses_read += 1
                return 100.0 / self.losses_read  # falling, so the stall check never stops the run
            self.token("R")
        # Host-side values (tile offsets drawn from a CPU generator, an optimiser's step
        # count): no device wait; 1 is a valid offset and a valid step.
        if name == "bool":
            return True
        if name == "tolist":
            return np.ones(tuple(tensor.shape)).tolist()
        return 1.0 if name == "float" or (name == "item" and tensor.is_floating_point()) else 1

    def expected_tokens(self) -> str:
        """Per scale of n iterations: B S, then n - 1 times B S F P (the loss of the previous
        iteration is read once the next one is queued), then the last loss: F P."""
        per_scale = Counter(event.scale for event in self.progress)
        return "".join("BS" + "BSFP" * (n - 1) + "FP" for _, n in sorted(per_scale.items()))

    def assert_one_late_read_per_iteration(self) -> None:
        tokens = "".join(self.tokens)
        # Before the first iteration (setup) and after the last (copying the result out)
        # the host may read; inside the loop only the one-late loss.
        assert re.fullmatch("R*" + re.escape(self.expected_tokens()) + "R*", tokens), (
            f"reads inside the loop: got {tokens}, expected {self.expected_tokens()} "
            f"(R = read of a CUDA value other than the loss); reads: {self.reads}")
        assert self.losses_read == len(self.progress)
        for name, device, dtype, shape in self.reads:
            if device == "cuda" and name in ("float", "item"):
                assert dtype == torch.float32 and shape == (), (name, dtype, shape)

    def optimised_inputs(self) -> list[tuple[int, int]]:
        """(height, width) of each network pass over the image being optimised."""
        return [shape[-2:] for _, _, shape, optimised in self.network_inputs if optimised]


class Spy(TorchFunctionMode):
    """Sees every torch call: reads of fake values, copies to the host, Gram products."""

    def __init__(self, recorder: Recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in READS and isinstance(args[0], FakeTensor):
            return self.recorder.read(READS[func], args[0])
        if func is torch.Tensor.numpy and isinstance(args[0], FakeTensor):
            # Only the result leaves the device, once, at the very end: no data, so zeros.
            return np.zeros(tuple(args[0].shape), dtype=np.float32)
        if writes_optimised_image(func, args):
            self.recorder.token("S")
        result = func(*args, **kwargs)
        if isinstance(result, torch.Tensor) and result.device.type == "cpu" and any(
                isinstance(t, torch.Tensor) and t.device.type == "cuda" for t in tree_flatten((args, kwargs))[0]):
            self.recorder.token("R")
            self.recorder.reads.append((f"copy to cpu ({getattr(func, '__name__', func)})", "cuda",
                                        result.dtype, tuple(result.shape)))
        if func in MATMULS and len(args) == 2 and all(isinstance(a, torch.Tensor) and a.dim() == 2 for a in args):
            left, right = args
            if left.shape == right.shape[::-1] and left.shape[0] < left.shape[1]:
                # (C, HW) @ (HW, C): a Gram matrix of a layer's features.
                self.recorder.grams.append((result.dtype, result.device.type, tuple(result.shape)))
        return result


def emulated_backward(recorder: Recorder):
    """autograd's engine cannot run on fake CUDA tensors: walk the graph to its leaves and
    accumulate a zero gradient of each leaf's dtype and device (a mismatch still raises)."""
    def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
                 inputs=None):
        roots = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
        for root in roots:
            recorder.backward_roots.append((root.dtype, root.device.type, tuple(root.shape)))
        recorder.token("B")
        seen, stack = set(), [root.grad_fn for root in roots]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            leaf = getattr(node, "variable", None)  # AccumulateGrad
            if leaf is not None:
                zero = torch.zeros_like(leaf, memory_format=torch.preserve_format)
                if leaf.grad is None:
                    leaf.grad = zero
                else:
                    leaf.grad.add_(zero)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return backward


def plain_apply(self, fn, recurse=True):
    """nn.Module._apply without swapping tensors in place (which fails on fake parameters)."""
    if recurse:
        for child in self.children():
            child._apply(fn)
    for key, parameter in self._parameters.items():
        if parameter is not None:
            self._parameters[key] = nn.Parameter(fn(parameter.detach()), requires_grad=parameter.requires_grad)
    for key, buffer in self._buffers.items():
        if buffer is not None:
            self._buffers[key] = fn(buffer)
    return self


UNPATCHED_CONV2D = F.conv2d


def clear_engine_caches() -> None:
    """The engine caches networks and style Grams (fake ones, here): drop them all."""
    for name, module in list(sys.modules.items()):
        if name != "stylize_core" and not name.startswith("stylize_core."):
            continue
        for attribute, value in vars(module).items():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
            elif isinstance(value, dict) and "cache" in attribute.lower():
                value.clear()


@pytest.fixture
def fake_cuda(monkeypatch):
    """run(content, settings) -> Recorder: stylize_picture on fake CUDA tensors."""
    real_is_available = torch.cuda.is_available
    free = {"bytes": 64 * 2**30}

    def is_available() -> bool:
        # True to the engine and to autocast; the real answer to torch's own internals,
        # which would otherwise try to initialise a driver that is not there.
        caller = sys._getframe(1).f_code.co_filename
        return caller.startswith(PACKAGE_DIR) or caller.endswith(AUTOCAST_FILE) or real_is_available()

    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *args, **kwargs: (free["bytes"], 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *args, **kwargs: 0)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(nn.Module, "_apply", plain_apply)
    # Fake tensors take no time: the device's calibration (timing.py) is given, not measured.
    from stylize_core.engine import api as engine
    from stylize_core.contract.timing import Calibration
    monkeypatch.setattr(engine, "calibration_for", lambda network, device, precision: Calibration(
        "fake", device.type, "fake GPU", ((0.01, 0.004), (0.15, 0.006)), ((0.25, 0.008),)))
    monkeypatch.setattr(engine, "learn_from_run", lambda calibration, predicted, measured: None)

    def run(content: Picture, settings: Settings, free_bytes: int = 64 * 2**30) -> Recorder:
        free["bytes"] = free_bytes
        recorder = Recorder()
        monkeypatch.setattr(torch.autograd, "backward", emulated_backward(recorder))

        def before(module, args):
            if isinstance(module, VGG19Features):
                image = args[0]
                recorder.network_inputs.append((image.device.type, image.dtype, tuple(image.shape),
                                                torch.is_grad_enabled() and image.requires_grad))

        def after(module, args, output):
            if isinstance(module, VGG19Features):
                recorder.features.append({layer: (f.dtype, f.device.type) for layer, f in output.items()})

        def recording_conv2d(x, weight, bias=None, *args, **kwargs):
            recorder.convs.append({
                "in_channels": weight.shape[1], "input_device": x.device.type,
                "input_channels_last": x.is_contiguous(memory_format=torch.channels_last),
                "weight_device": weight.device.type, "bias_device": bias.device.type,
                "weight_channels_last": weight.is_contiguous(memory_format=torch.channels_last),
                "weight_dtype": weight.dtype})
            return UNPATCHED_CONV2D(x, weight, bias, *args, **kwargs)
        monkeypatch.setattr(F, "conv2d", recording_conv2d)

        hooks = [nn.modules.module.register_module_forward_pre_hook(before),
                 nn.modules.module.register_module_forward_hook(after)]
        clear_engine_caches()
        try:
            with FakeTensorMode(allow_non_fake_inputs=True), Spy(recorder):
                result = stylize_picture(content, [picture(80, 96, seed=1)], settings, recorder.on_progress)
        finally:
            for hook in hooks:
                hook.remove()
            clear_engine_caches()
        assert result.rgb.shape == (content.rgb.shape[0], content.rgb.shape[1], 3)
        assert isinstance(result.rgb, np.ndarray)
        return recorder

    yield run
    clear_engine_caches()


def assert_all_on_cuda(recorder: Recorder) -> None:
    assert recorder.network_inputs and recorder.convs
    assert {device for device, _, _, _ in recorder.network_inputs} == {"cuda"}
    for conv in recorder.convs:
        assert conv["input_device"] == conv["weight_device"] == conv["bias_device"] == "cuda", conv
    assert {device for _, device, _ in recorder.grams} == {"cuda"}
    assert {device for _, device, _ in recorder.backward_roots} == {"cuda"}


def assert_channels_last(recorder: Recorder, precision: str) -> None:
    for conv in recorder.convs:
        assert conv["weight_channels_last"], conv
    if FEATURE_DTYPE[precision] == torch.bfloat16 and not REAL_CUDA:
        # Without a GPU the fake bf16 convolutions answer NCHW (their memory format is chosen by
        # asking the device); benchmarks/gpu_check.sh checks the real layout on a GPU.
        return
    # conv1_1 sees the replicate-padded 3-channel image, which fake tensors give as NCHW
    # (replicate padding's meta function; the real kernel may differ: gpu_check.sh's layout
    # step reports it). Every later convolution must get channels-last activations.
    later = [conv for conv in recorder.convs if conv["in_channels"] != 3]
    assert later and all(conv["input_channels_last"] for conv in later), \
        Counter(conv["input_channels_last"] for conv in later)


def assert_dtypes(recorder: Recorder, precision: str) -> None:
    expected = FEATURE_DTYPE[precision]
    # The weights reach every convolution already in the run's precision (cast once, not per call).
    assert recorder.convs and {conv["weight_dtype"] for conv in recorder.convs} == {expected}
    assert recorder.features
    for features in recorder.features:
        assert {dtype for dtype, _ in features.values()} == {expected}, features
    assert recorder.grams, "no Gram matrix products seen"
    assert {dtype for dtype, _, _ in recorder.grams} == {torch.float32}, Counter(recorder.grams)
    assert recorder.backward_roots
    assert {(dtype, shape) for dtype, _, shape in recorder.backward_roots} == {(torch.float32, ())}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_lbfgs_on_cuda_reads_one_loss_per_iteration_one_late(fake_cuda, precision):
    recorder = fake_cuda(picture(144, 128, seed=0),
                         Settings(device="cuda", precision=precision, iterations=4, scales=2))
    assert torch.backends.cudnn.benchmark, "cuDNN autotuning not switched on for CUDA"
    assert sorted(Counter(e.scale for e in recorder.progress).items()) == [(1, 4), (2, 4)]
    assert_all_on_cuda(recorder)
    assert_channels_last(recorder, precision)
    assert_dtypes(recorder, precision)
    recorder.assert_one_late_read_per_iteration()


@pytest.mark.slow
def test_lbfgs_history_ring_wraps_around_without_reads(fake_cuda):
    iterations = 2 * LBFGS_HISTORY + 3  # every ring slot reused twice, and three more
    recorder = fake_cuda(picture(64, 64, seed=0),
                         Settings(device="cuda", precision="bf16", iterations=iterations, scales=1))
    assert len(recorder.progress) == iterations
    assert_all_on_cuda(recorder)
    recorder.assert_one_late_read_per_iteration()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_adam_on_cuda(fake_cuda, precision):
    recorder = fake_cuda(picture(96, 80, seed=0),
                         Settings(device="cuda", optimizer="adam", precision=precision, iterations=5, scales=1))
    assert len(recorder.progress) == 5
    assert_all_on_cuda(recorder)
    assert_channels_last(recorder, precision)
    assert_dtypes(recorder, precision)
    recorder.assert_one_late_read_per_iteration()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_forced_tiles_on_cuda(fake_cuda, precision):
    width, height, iterations = 320, 288, 3
    recorder = fake_cuda(picture(width, height, seed=0),
                         Settings(device="cuda", precision=precision, iterations=iterations, scales=1,
                                  max_size=width, tile_size=128))
    passes = recorder.optimised_inputs()
    # The image is never seen whole, only in crops (tile plus context), several per iteration.
    assert passes and all(h < height and w < width for h, w in passes), Counter(passes)
    assert len(passes) > 2 * iterations
    assert_all_on_cuda(recorder)
    assert_channels_last(recorder, precision)
    assert_dtypes(recorder, precision)  # the tiled style Grams too
    recorder.assert_one_late_read_per_iteration()


def test_plan_follows_free_cuda_memory(fake_cuda):
    """The plan for cuda asks the device how much is free: plenty -> whole image, little -> tiles."""
    content = picture(1024, 768, seed=0)
    settings = Settings(device="cuda", precision="fp32", iterations=2, scales=1, max_size=1024)
    whole = fake_cuda(content, settings, free_bytes=64 * 2**30)
    assert whole.optimised_inputs() == [(768, 1024)] * 2
    tight = fake_cuda(content, settings, free_bytes=2 * 2**30)
    tiles = tight.optimised_inputs()
    assert len(tiles) > 2 and all(h < 768 and w < 1024 for h, w in tiles), Counter(tiles)
    assert_all_on_cuda(tight)
    tight.assert_one_late_read_per_iteration()


def test_the_spy_sees_reads_of_cuda_values(fake_cuda):
    """The harness itself: a host read of a (fake) CUDA value in the loop is an R, and fails the check."""
    recorder = Recorder()
    with FakeTensorMode(allow_non_fake_inputs=True), Spy(recorder):
        value = torch.ones(3, device="cuda").sum()
        recorder.token("B")
        recorder.token("S")
        assert bool(value > 0) is True
        value.cpu()
        assert float(value) == 100.0
    assert "".join(recorder.tokens) == "BSRRF"
    recorder.progress.append(Progress("optimize", scale=1, iteration=1))
    recorder.tokens.append("P")
    with pytest.raises(AssertionError, match="reads inside the loop"):
        recorder.assert_one_late_read_per_iteration()
