"""The loss terms are normalised: the same picture at another size scores the same."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from stylize_core.engine.losses import _Gram, blend_grams, content_loss, gram_matrix, style_loss, total_variation


def test_gram_is_an_average_over_positions():
    torch.manual_seed(0)
    features = torch.rand(1, 6, 5, 7)
    tiled = features.repeat(1, 1, 3, 2)  # the same statistics over 6x the positions
    assert torch.allclose(gram_matrix(features), gram_matrix(tiled), rtol=1e-5)
    flat = features.reshape(6, -1)
    assert torch.allclose(gram_matrix(features), flat @ flat.t() / 35, rtol=1e-5)


def test_style_loss_is_relative_and_layer_balanced():
    torch.manual_seed(0)
    small = {"a": torch.rand(1, 4, 6, 6), "b": torch.rand(1, 8, 3, 3)}
    targets = {name: gram_matrix(f) for name, f in small.items()}
    assert style_loss(small, targets).item() == pytest.approx(0.0, abs=1e-6)
    # Scaling one layer's activations by 10 scales its Gram by 100; relative error stays O(1).
    louder = {name: f * (10 if name == "a" else 1) for name, f in small.items()}
    loss = style_loss(louder, targets).item()
    assert loss == pytest.approx(((100 - 1) ** 2) / 2, rel=1e-4)


def test_content_loss_is_relative():
    target = torch.rand(1, 4, 5, 5)
    assert content_loss(target, target).item() == pytest.approx(0.0)
    assert content_loss(torch.zeros_like(target), target).item() == pytest.approx(1.0)
    assert content_loss(3 * target, target).item() == pytest.approx(4.0, rel=1e-5)


def test_total_variation_is_resolution_free_for_the_same_picture():
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 128), indexing="ij")
    small = torch.stack([torch.sin(6 * x), torch.cos(5 * y), x * y]).unsqueeze(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 512), indexing="ij")
    large = torch.stack([torch.sin(6 * x), torch.cos(5 * y), x * y]).unsqueeze(0)
    assert total_variation(small).item() == pytest.approx(total_variation(large).item(), rel=0.05)
    assert total_variation(torch.ones(1, 3, 8, 8)).item() == 0


def test_blended_targets_weigh_the_styles():
    a = {layer: torch.ones(1, 2, 2, 2) for layer in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")}
    b = {layer: 3 * torch.ones(1, 2, 2, 2) for layer in a}
    grams = [{layer: gram_matrix(f) for layer, f in features.items()} for features in (a, b)]
    blended = blend_grams(grams, [3.0, 1.0])
    assert torch.allclose(blended["relu1_1"], 0.75 * gram_matrix(a["relu1_1"]) + 0.25 * gram_matrix(b["relu1_1"]))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gram_and_its_gradient_match_autograd_in_either_memory_layout(layout):
    torch.manual_seed(1)
    features = torch.rand(1, 5, 4, 6, dtype=torch.float64).to(memory_format=layout).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: gram_matrix(f.float()).double(), (features,), eps=1e-3, atol=1e-2)
    weights = torch.rand(5, 5)
    (gram_matrix(features.float()) * weights).sum().backward()
    flat = features.reshape(5, -1)
    expected = torch.autograd.grad((flat @ flat.t() / 24 * weights).sum(), features)[0]
    assert torch.allclose(features.grad, expected, rtol=1e-4, atol=1e-6)
    # The Gram's own backward hands its input's gradient back in that input's memory layout: in a
    # real run a transposed one costs a full-size conversion and a cross-layout add per layer.
    flat = features.detach().float().permute(0, 2, 3, 1).reshape(24, 5).t().requires_grad_(True)
    if layout == torch.contiguous_format:
        flat = features.detach().float().reshape(5, 24).requires_grad_(True)
    gradient, = torch.autograd.grad((_Gram.apply(flat) * weights).sum(), flat)
    assert gradient.stride() == flat.stride()


class RecordingMatmuls(TorchDispatchMode):
    """Records the input dtype of every matrix product run while it is active."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.mm.default, torch.ops.aten.matmul.default):
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_bfloat16_features_on_a_cpu_make_their_gram_in_bfloat16_and_close_to_float32(layout):
    """A bfloat16 pass's Gram multiplies in bfloat16 (no float32 copy of F either way), returns
    float32, and stays within bfloat16's rounding of the float32 Gram and its gradient."""
    torch.manual_seed(2)
    features = (torch.rand(1, 16, 40, 50) * 50).to(memory_format=layout)
    low = features.bfloat16().requires_grad_(True)
    weights = torch.rand(16, 16)
    with RecordingMatmuls() as matmuls:
        gram = gram_matrix(low)
        (gram * weights).sum().backward()
    assert gram.dtype == torch.float32
    assert matmuls.dtypes == [torch.bfloat16, torch.bfloat16]  # the forward product and the backward one
    exact = features.float().requires_grad_(True)
    expected = gram_matrix(exact)
    (expected * weights).sum().backward()
    assert torch.allclose(gram, expected, rtol=1e-2)
    assert low.grad.dtype == torch.bfloat16
    assert float((low.grad.float() - exact.grad).norm() / exact.grad.norm()) < 1e-2
