"""L-BFGS that never waits for the device: one loss and gradient per step, no line search.

This is the method of torch.optim.LBFGS(max_iter=1, line_search_fn=None), with its
bookkeeping moved onto the device. torch's version reads values back to decide
things (the loss as a float, whether the curvature s.y is positive, the first
step's length); each read makes the host wait until the GPU has finished all work
queued so far, so the GPU idles while Python prepares the next iteration. Here:

* the curvature pairs s_k = x_{k+1} - x_k, y_k = g_{k+1} - g_k live in two
  preallocated (history, pixels) buffers used as a ring, and the host knows which
  slots are filled from the step count alone;
* a pair without positive curvature is stored with rho_k = 0 instead of being
  dropped, which takes it out of the two-loop recursion (its alpha and beta are
  0) without a branch on a device value: it only wastes its slot until the ring
  comes round;
* scalars (rho, alpha, beta, the initial Hessian scale) stay 0-d device tensors.
"""

from __future__ import annotations

import torch

CURVATURE_EPSILON = 1e-10
"""Pairs with s.y at or below this are not used (torch.optim.LBFGS's threshold)."""


class LBFGS:
    """Steps `image` (a leaf tensor) along the L-BFGS direction of the gradient in image.grad."""

    def __init__(self, image: torch.Tensor, history: int):
        pixels = image.numel()
        self.image = image
        self.history = history
        self.steps = image.new_zeros(history, pixels)
        """s_k; slot k % history also holds the step just taken until its y_k arrives."""
        self.gradient_changes = image.new_zeros(history, pixels)
        """y_k."""
        self.rho = image.new_zeros(history)
        """1 / (s_k.y_k), or 0 for a pair that is not used."""
        self.hessian_scale = image.new_ones(())
        """gamma = s.y / y.y of the newest used pair: the initial inverse Hessian is gamma I."""
        self.previous_gradient = image.new_zeros(pixels)
        self.taken = 0

    @torch.no_grad()
    def step(self) -> None:
        gradient = self.image.grad.reshape(-1)
        if self.taken == 0:
            # Steepest descent, no longer than 1 / |g|_1 (as torch's first step), since
            # there is no curvature yet to say how far to go.
            direction = gradient.neg().mul_(gradient.abs().sum().reciprocal().clamp(max=1))
        else:
            self._remember_pair(gradient)
            direction = self._two_loop(gradient)
        self.previous_gradient.copy_(gradient)
        self.steps[self.taken % self.history].copy_(direction)
        self.image.view(-1).add_(direction)
        self.taken += 1

    def _remember_pair(self, gradient: torch.Tensor) -> None:
        slot = (self.taken - 1) % self.history
        step, change = self.steps[slot], self.gradient_changes[slot]
        torch.sub(gradient, self.previous_gradient, out=change)
        curvature = torch.dot(step, change)
        used = curvature > CURVATURE_EPSILON
        self.rho[slot] = torch.where(used, curvature.reciprocal(), torch.zeros_like(curvature))
        self.hessian_scale = torch.where(used, curvature / torch.dot(change, change), self.hessian_scale)

    def _two_loop(self, gradient: torch.Tensor) -> torch.Tensor:
        """-H g, with H the L-BFGS inverse Hessian of the stored pairs (Nocedal & Wright, alg. 7.4)."""
        newest_first = [(self.taken - 1 - age) % self.history for age in range(min(self.taken, self.history))]
        direction = gradient.neg()
        alphas = {}
        for slot in newest_first:
            alphas[slot] = self.rho[slot] * torch.dot(self.steps[slot], direction)
            direction.addcmul_(self.gradient_changes[slot], alphas[slot], value=-1)
        direction.mul_(self.hessian_scale)
        for slot in reversed(newest_first):
            beta = self.rho[slot] * torch.dot(self.gradient_changes[slot], direction)
            direction.addcmul_(self.steps[slot], alphas[slot] - beta)
        return direction
