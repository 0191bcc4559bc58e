"""Keeping the content's colours (Gatys et al. 2016, "Preserving color in neural artistic style transfer").

* luminance: after the optimisation the result keeps its own luminance (the
  strokes) and takes the content's chrominance (YIQ).
* histogram: before the optimisation each style image is recoloured so that its
  colour mean and covariance equal the content's; the style then carries its
  strokes but the content's palette.
"""

from __future__ import annotations

import numpy as np

_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], dtype=np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
LUMA = _RGB_TO_YIQ[0].astype(np.float32)
"""The grey level of an RGB pixel: the Y of YIQ (Rec. 601 weights)."""


def keep_content_chrominance(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """(H, W, 3) result with the content's I and Q channels; both arrays the same size."""
    result_yiq = result.astype(np.float64) @ _RGB_TO_YIQ.T
    content_yiq = content.astype(np.float64) @ _RGB_TO_YIQ.T
    merged = np.concatenate([result_yiq[..., :1], content_yiq[..., 1:]], axis=2)
    return np.clip(merged @ _YIQ_TO_RGB.T, 0, 1).astype(np.float32)


def match_color_statistics(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """source recoloured by an affine map so its RGB mean and covariance equal reference's."""
    src = source.reshape(-1, 3).astype(np.float64)
    ref = reference.reshape(-1, 3).astype(np.float64)
    src_mean, ref_mean = src.mean(0), ref.mean(0)
    src_cov = np.cov(src, rowvar=False) + 1e-5 * np.eye(3)
    ref_cov = np.cov(ref, rowvar=False) + 1e-5 * np.eye(3)
    transform = _sqrtm(ref_cov) @ np.linalg.inv(_sqrtm(src_cov))
    matched = (src - src_mean) @ transform.T + ref_mean
    return np.clip(matched, 0, 1).reshape(source.shape).astype(np.float32)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive definite matrix."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 1e-12, None))) @ vectors.T
