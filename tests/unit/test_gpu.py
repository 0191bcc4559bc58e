"""The CUDA path, where there is a CUDA GPU: no host waits inside the loop, bf16 as good as fp32."""

import pytest
import torch

from stylize_core import Settings, stylize
from stylize_core.engine.lbfgs import LBFGS
from helpers import CONTENT, STYLE, example_objective, rgb_of, small, style_distance

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_iterations_never_make_the_host_wait_for_the_gpu():
    objective, content = example_objective((256, 192), torch.device("cuda"), "bf16")
    objective.network.use_channels_last()
    image = content.clone().requires_grad_(True)
    image.grad = torch.zeros_like(image)
    solver = LBFGS(image, history=3)

    def iterate():
        image.grad.zero_()
        objective.evaluate(image)
        solver.step()

    iterate()  # first calls may autotune cuDNN, which synchronises by design
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            iterate()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert torch.isfinite(image).all()


def test_bf16_keeps_the_quality_of_fp32():
    content, style = small(CONTENT, 256), small(STYLE, 256)
    settings = Settings(max_size=256, iterations=150, device="cuda", seed=0)
    sty = rgb_of(style)
    exact = style_distance(rgb_of(stylize(content, style, settings.replace(precision="fp32"))), sty)
    mixed = style_distance(rgb_of(stylize(content, style, settings.replace(precision="bf16"))), sty)
    assert mixed < 1.2 * exact
