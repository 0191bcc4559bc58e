"""How the picture moves between two frames: optical flow, warping, and where the flow can be trusted.

The flow is OpenCV's DIS (Kroeger et al. 2016): milliseconds a frame on a CPU and no weights to
download. It is computed on the input frames, never on the restyled ones (their strokes would be
followed instead of the scene). Reliability is Ruder et al.'s (2016, eq. 4): a pixel of frame t is
followed back to frame t-1 and forward again, and where it does not come back near itself it was
occluded or disoccluded; a pixel on a motion boundary (where the flow changes sharply: the edge of a
walking person) is not trusted either, nor one whose source lies outside frame t-1 (it came in at a
border). The temporal loss leaves those free.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CONSISTENCY_SLACK = 0.01
"""Ruder et al.'s check: |w + w_back|^2 <= 0.01 (|w|^2 + |w_back|^2) + 0.5."""
CONSISTENCY_FLOOR = 0.5
BOUNDARY_SLACK = 0.01
"""Ruder et al.'s motion boundaries: |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002."""
BOUNDARY_FLOOR = 0.002


@dataclass
class Motion:
    """From frame t-1 to frame t, at one size (height, width)."""
    backward: np.ndarray
    """float32 (H, W, 2): where each pixel of frame t was in frame t-1 (dx, dy)."""
    reliable: np.ndarray
    """float32 (H, W): 1 where the backward flow is confirmed by the forward flow, else 0."""

    def resized(self, size: tuple[int, int]) -> "Motion":
        """The same motion at size (width, height): the flow's vectors scale with the picture."""
        height, width = self.reliable.shape
        if (width, height) == size:
            return self
        backward = cv2.resize(self.backward, size, interpolation=cv2.INTER_LINEAR)
        backward[..., 0] *= size[0] / width
        backward[..., 1] *= size[1] / height
        reliable = (cv2.resize(self.reliable, size, interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32)
        return Motion(backward, reliable)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.round(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def motion_between(previous_rgb: np.ndarray, current_rgb: np.ndarray) -> Motion:
    """The motion from previous_rgb to current_rgb (float32 (H, W, 3), 0..1, the same size)."""
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    previous, current = _gray(previous_rgb), _gray(current_rgb)
    forward = flow.calc(previous, current, None)
    backward = flow.calc(current, previous, None)
    forward_at_source = warp(forward, backward)
    round_trip = ((forward_at_source + backward) ** 2).sum(-1)
    allowed = CONSISTENCY_SLACK * ((forward_at_source ** 2).sum(-1) + (backward ** 2).sum(-1)) + CONSISTENCY_FLOOR
    dv_dy, dv_dx = np.gradient(backward[..., 1])
    du_dy, du_dx = np.gradient(backward[..., 0])
    sharpness = du_dx ** 2 + du_dy ** 2 + dv_dx ** 2 + dv_dy ** 2
    boundary = sharpness > BOUNDARY_SLACK * (backward ** 2).sum(-1) + BOUNDARY_FLOOR
    height, width = backward.shape[:2]
    x, y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    source_x, source_y = x + backward[..., 0], y + backward[..., 1]
    inside = (source_x > -0.5) & (source_x < width - 0.5) & (source_y > -0.5) & (source_y < height - 0.5)
    return Motion(backward, ((round_trip <= allowed) & ~boundary & inside).astype(np.float32))


def warp(picture: np.ndarray, backward: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """picture (frame t-1, (H, W, C)) moved to frame t: each pixel taken from where the flow says it was."""
    height, width = backward.shape[:2]
    x, y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(picture, x + backward[..., 0], y + backward[..., 1], interpolation,
                     borderMode=cv2.BORDER_REPLICATE)


def warp_sharp(picture: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """warp() with Lanczos interpolation (8x8): a restyled frame is warped again at every frame of a
    clip, so the interpolation's error compounds. A bilinear one blurs the strokes away; a bicubic one
    lifts the mid frequencies a little at each warp, and over a few dozen frames the strokes turn into
    a ripple."""
    return np.clip(warp(picture, backward, cv2.INTER_LANCZOS4), 0, 1)
