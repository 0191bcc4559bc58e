"""L-BFGS that never waits for the device: one loss and gradient per step, no line search.

This is the method of torch.optim.LBFGS(max_iter=1, line_search_fn=None) with the
same steps, computed differently:

* No read-backs. torch's version reads values to decide things (the loss as a
  float, whether the curvature s.y is positive, the first step's length); each
  read makes the host wait until the GPU has finished all work queued so far.
  Here every decision is arithmetic on the device: a pair without positive
  curvature gets y = 0, which drops it from the formula exactly (see
  _compact_direction), instead of being left out by a branch.
* A fixed number of operations per step. The two-loop recursion costs four small
  kernels per stored pair (80 with 20 pairs), each launched from Python; the
  compact form of Byrd, Nocedal & Schnabel (1994) computes the same direction with
  three matrix-vector products over all pairs and a few operations on small
  history x history matrices, and reads the stored pairs from memory half as often.

The pairs s_k = x_{k+1} - x_k, y_k = g_{k+1} - g_k live in one preallocated
(2, history, pixels) buffer used as a ring; the host knows which slots are
filled, and in which order, from the step count alone.
"""

from __future__ import annotations

import torch

CURVATURE_EPSILON = 1e-10
"""Pairs with s.y at or below this are not used (torch.optim.LBFGS's threshold)."""


class LBFGS:
    """Steps `image` (a leaf tensor) along the L-BFGS direction of the gradient in image.grad."""

    def __init__(self, image: torch.Tensor, history: int, first_step_scale: torch.Tensor | None = None):
        """first_step_scale: the inverse Hessian's scale gamma to take the first step with, known from
        a similar problem (the previous scale of coarse to fine; NaN where that measured none); without
        it the first step is short."""
        pixels = image.numel()
        self.image = image
        self.history = history
        self.pairs = image.new_zeros(2 * history, pixels)
        """Rows 0..history-1: s_k (slot k % history); the rest: y_k. A slot's s is
        written when the step is taken, its y one step later."""
        self.steps, self.gradient_changes = self.pairs[:history], self.pairs[history:]
        self.step_dot_change = image.new_zeros(history, history)
        """[i, j] = s_i . y_j, by slot."""
        self.change_dot_change = image.new_zeros(history, history)
        """[i, j] = y_i . y_j, by slot."""
        self.scale_known = (image.new_zeros((), dtype=torch.bool) if first_step_scale is None
                            else torch.isfinite(first_step_scale))
        """Whether gamma was given or measured by a used pair: on the device, so nothing is read back."""
        self.hessian_scale = (image.new_ones(()) if first_step_scale is None
                              else torch.where(self.scale_known, first_step_scale, 1.0))
        """gamma = s.y / y.y of the newest used pair: the initial inverse Hessian is gamma I."""
        self.first_step_scale = first_step_scale
        self.previous_gradient = image.new_zeros(pixels)
        self.taken = 0

    def measured_scale(self) -> torch.Tensor | None:
        """gamma where a used pair measured it (or it was given), NaN where every pair was left out;
        None when no pair can have been (fewer than two steps and none given)."""
        if self.taken <= 1 and self.first_step_scale is None:
            return None
        return torch.where(self.scale_known, self.hessian_scale, torch.nan)

    @torch.no_grad()
    def step(self) -> None:
        gradient = self.image.grad.reshape(-1)
        if self.taken == 0:
            # Steepest descent, no longer than 1 / |g|_1 (as torch's first step) where there is no
            # curvature yet to say how far to go; with a known gamma, as far as that says.
            length = gradient.abs().sum().reciprocal().clamp(max=1)
            if self.first_step_scale is not None:
                length = torch.where(self.scale_known, self.hessian_scale, length)
            direction = gradient.neg().mul_(length)
        else:
            self._remember_pair(gradient)
            direction = self._compact_direction(gradient)
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
        self.hessian_scale = torch.where(used, curvature / torch.dot(change, change), self.hessian_scale)
        self.scale_known = self.scale_known | used
        change.mul_(used.to(change.dtype))
        with_change = self.pairs @ change
        self.step_dot_change[:, slot] = with_change[:self.history]
        self.change_dot_change[:, slot] = with_change[self.history:]
        self.change_dot_change[slot, :] = with_change[self.history:]
        self.step_dot_change[slot, :] = self.gradient_changes @ step

    def _compact_direction(self, gradient: torch.Tensor) -> torch.Tensor:
        """-H g with H = gamma I + [S gamma Y] M [S gamma Y]^T (Nocedal & Wright, eq. 7.24).

        With S, Y the pairs oldest first, R = triu(S^T Y), D = diag(S^T Y),
        a = S^T g, b = Y^T g, p = R^-1 a and c = R^-T ((D + gamma Y^T Y) p - gamma b):
        H g = gamma g + S c - gamma Y p. A pair with y = 0 has b = 0 and a zero
        column in R; with 1 on R's diagonal there, its c is 0, its p only ever
        multiplies y = 0, and the other pairs' p and c are what they would be
        without it.
        """
        filled = min(self.taken, self.history)
        oldest = self.taken % self.history if self.taken >= self.history else 0

        def in_order(values: torch.Tensor) -> torch.Tensor:
            """Slots -> oldest-first order, along every dimension."""
            dims = tuple(range(values.dim()))
            rolled = torch.roll(values, shifts=(-oldest,) * len(dims), dims=dims)
            return rolled[(slice(filled),) * len(dims)]

        with_gradient = self.pairs @ gradient
        a, b = in_order(with_gradient[:self.history]), in_order(with_gradient[self.history:])
        step_dot_change = in_order(self.step_dot_change)
        curvatures = step_dot_change.diagonal()
        upper = step_dot_change.triu() + torch.diag((curvatures == 0).to(curvatures.dtype))
        gamma = self.hessian_scale
        p = torch.linalg.solve_triangular(upper, a.unsqueeze(1), upper=True).squeeze(1)
        right = curvatures * p + gamma * (in_order(self.change_dot_change) @ p) - gamma * b
        c = torch.linalg.solve_triangular(upper.t(), right.unsqueeze(1), upper=False).squeeze(1)

        # Back to slots: -H g = -S c + gamma Y p - gamma g.
        coefficients = gradient.new_zeros(2, self.history)
        coefficients[0, :filled] = -c
        coefficients[1, :filled] = gamma * p
        coefficients = torch.roll(coefficients, shifts=oldest, dims=1)
        direction = self.pairs.t() @ coefficients.reshape(-1)
        return direction.addcmul_(gradient, gamma, value=-1)
