"""The optimiser: same steps as torch's L-BFGS, and no read-back from the device inside a step."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from stylize_core.engine.lbfgs import LBFGS
from stylize_core.engine.optimize import Curvature, optimize
from helpers import example_objective

READ_BACK_OPS = {"_local_scalar_dense", "is_nonzero", "item", "nonzero", "equal"}
"""Operators that hand a device value to the host: on a GPU each one waits for the queue to drain."""


class OperatorLog(TorchDispatchMode):
    """Records every operator run, and which of them read a value back (.item(), float(), bool(), ...)."""

    def __init__(self):
        super().__init__()
        self.operators = []
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.operators.append(name)
        if name in READ_BACK_OPS:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


def smooth_convex(x: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """A least-squares bowl with a non-quadratic term, so the curvature changes from step to step."""
    log_cosh = x + torch.nn.functional.softplus(-2 * x)  # log cosh x + log 2, without overflow
    return 0.5 * (matrix @ x - offset).pow(2).mean() + 0.2 * log_cosh.sum()


def step_beside_torch_lbfgs(function, start: torch.Tensor, history: int, steps: int):
    """Runs our L-BFGS and torch.optim.LBFGS side by side from `start`, asserting equal iterates."""
    ours = start.clone().requires_grad_(True)
    solver = LBFGS(ours, history)
    theirs = start.clone().requires_grad_(True)
    reference = torch.optim.LBFGS([theirs], lr=1, max_iter=1, history_size=history,
                                  tolerance_grad=-1, tolerance_change=-1)

    def closure():
        reference.zero_grad()
        loss = function(theirs)
        loss.backward()
        return loss

    for _ in range(steps):
        ours.grad = None
        function(ours).backward()
        solver.step()
        reference.step(closure)
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-9, atol=1e-12)
    return ours.detach(), reference.state[theirs]


def test_steps_match_torch_lbfgs_through_a_full_history_ring():
    generator = torch.Generator().manual_seed(1)
    matrix = torch.randn(40, 30, generator=generator, dtype=torch.float64)
    offset = torch.randn(40, generator=generator, dtype=torch.float64) * 3
    start = torch.randn(30, generator=generator, dtype=torch.float64)

    def bowl(x):
        return smooth_convex(x, matrix, offset)

    # 18 steps: well past the 5-pair history, before the curvature gets too small to compare.
    result, _ = step_beside_torch_lbfgs(bowl, start, history=5, steps=18)
    assert bowl(result) < 0.5 * bowl(start)


def test_pairs_without_positive_curvature_drop_out_as_in_torch_lbfgs():
    def wavy(x):  # negative curvature wherever cos x > 1/2
        return (0.5 * x.pow(2) + 2.0 * torch.cos(x)).sum()

    start = torch.randn(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    _, torch_state = step_beside_torch_lbfgs(wavy, start, history=20, steps=15)
    assert len(torch_state["old_dirs"]) < 14  # torch did drop pairs on the way


def test_a_pair_without_positive_curvature_is_left_out():
    image = torch.zeros(4, requires_grad=True)
    solver = LBFGS(image, history=3)
    image.grad = torch.tensor([1.0, 0.0, 0.0, 0.0])
    solver.step()                      # moves against the gradient: s = (-1, 0, 0, 0)
    image.grad = torch.tensor([2.0, 1.0, 0.0, 0.0])
    solver.step()                      # y = (1, 1, 0, 0), s.y = -1 < 0: that pair must not count,
    # and with no usable pair the direction is plain steepest descent, -g.
    torch.testing.assert_close(image.detach(), torch.tensor([-3.0, -1.0, 0.0, 0.0]))


def operators_per_step(history: int) -> int:
    """Operators one step dispatches once the history ring is full."""
    image = torch.randn(1000, requires_grad=True)
    solver = LBFGS(image, history)
    for _ in range(history + 2):
        image.grad = image.detach() * 2 + torch.sin(image.detach())
        with OperatorLog() as log:
            solver.step()
    return len(log.operators)


def test_a_step_launches_as_many_operators_with_a_long_history_as_with_a_short_one():
    # The two-loop recursion would launch four more per stored pair: on a GPU each
    # costs a launch from Python, more than the arithmetic itself at typical sizes.
    assert operators_per_step(20) == operators_per_step(3)


@pytest.fixture(scope="module")
def objective_and_image():
    return example_objective((64, 48), torch.device("cpu"))


def test_an_iteration_reads_nothing_back_from_the_device(objective_and_image):
    objective, content = objective_and_image
    image = content.clone().requires_grad_(True)
    image.grad = torch.zeros_like(image)
    solver = LBFGS(image, history=3)
    with OperatorLog() as counter:
        for _ in range(5):  # past the history, so ring wrap-around is covered
            image.grad.zero_()
            objective.evaluate(image)
            solver.step()
    assert counter.reads == []


def test_each_loss_is_read_once_on_the_cpu_right_after_its_iteration(objective_and_image):
    """A CPU has no queue to keep busy: each loss is read at once (on a GPU one iteration late,
    with the next one queued: tests/unit/test_fake_cuda.py checks that order on fake CUDA tensors)."""
    objective, content = objective_and_image
    events = []

    class Recording:
        def evaluate(self, image):
            events.append("evaluate")
            return objective.evaluate(image)

    with OperatorLog() as counter:
        result = optimize(content, Recording(), 4, "lbfgs", 0.0,
                          lambda iteration, loss: events.append(f"loss {iteration}"))
    assert events == ["evaluate", "loss 1", "evaluate", "loss 2", "evaluate", "loss 3", "evaluate", "loss 4"]
    assert len(counter.reads) == 4
    assert result.shape == content.shape and (result - content).abs().mean() > 1e-4  # the pixels moved


@pytest.mark.slow
def test_the_loss_falls_and_a_stall_stops_the_run(objective_and_image):
    objective, content = objective_and_image
    losses = []
    optimize(content, objective, 60, "lbfgs", 0.5, lambda iteration, loss: losses.append(loss))
    assert losses[-1] < 0.8 * losses[0]
    # A 50 % improvement per 10 iterations is soon out of reach: the run stops early.
    assert 11 <= len(losses) < 60


class MeanSquares:
    """The mean over pixels of stiffness * (pixel - 0.5)^2: a loss normalised per pixel, as ours are,
    so its inverse curvature grows with the pixel count."""

    def __init__(self, stiffness: float):
        self.stiffness = stiffness

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        loss = self.stiffness * (image - 0.5).pow(2).mean(dim=(0, 2, 3)).sum()
        loss.backward()
        return loss.detach()


def test_the_next_scale_starts_with_the_curvature_of_the_scale_before():
    """Solved at 16x16, the same loss at 32x32 takes a full first step, scaled by the pixel count,
    where a fresh L-BFGS only probes; without a curvature measured (one iteration) none is handed on."""
    torch.manual_seed(3)
    loss = MeanSquares(stiffness=4.0)
    curvature = Curvature()
    optimize(torch.rand(1, 3, 16, 16), loss, 5, "lbfgs", 0.0, lambda i, value: None, curvature=curvature)
    assert curvature.per_pixel is not None
    start = torch.rand(1, 3, 32, 32)
    first_losses = {}
    for name, handed_on in (("carried", curvature), ("fresh", None)):
        losses = []
        optimize(start, loss, 2, "lbfgs", 0.0, lambda i, value: losses.append(value), curvature=handed_on)
        first_losses[name] = losses  # the loss at the start, then after the first step
    assert first_losses["carried"][1] < 0.01 * first_losses["carried"][0]
    assert first_losses["fresh"][1] > 0.5 * first_losses["fresh"][0]
    once = Curvature()
    optimize(start, loss, 1, "lbfgs", 0.0, lambda i, value: None, curvature=once)
    assert once.per_pixel is None


class Slope:
    """A linear loss: its gradient never changes, so no pair of steps has curvature to measure."""

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        loss = image.sum() / image.numel()
        loss.backward()
        return loss.detach()


def test_a_scale_whose_pairs_all_went_unused_hands_on_no_curvature():
    """Its gamma is still the default 1, not a measurement: the next scale takes the short first step."""
    torch.manual_seed(4)
    curvature = Curvature()
    optimize(torch.rand(1, 3, 16, 16), Slope(), 2, "lbfgs", 0.0, lambda i, value: None, curvature=curvature)
    assert torch.isnan(curvature.per_pixel)
    start, loss = torch.rand(1, 3, 32, 32), MeanSquares(stiffness=4.0)
    first_steps = []
    for handed_on in (curvature, None):
        losses = []
        optimize(start, loss, 2, "lbfgs", 0.0, lambda i, value: losses.append(value), curvature=handed_on)
        first_steps.append(losses[1])
    assert first_steps[0] == first_steps[1]
