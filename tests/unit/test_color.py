import numpy as np

from stylize_core.engine.color import _RGB_TO_YIQ, keep_content_chrominance, match_color_statistics


def yiq(rgb):
    return rgb.astype(np.float64) @ _RGB_TO_YIQ.T


def test_luminance_mode_keeps_strokes_and_content_colours():
    rng = np.random.default_rng(0)
    content = rng.uniform(0.3, 0.7, (20, 30, 3)).astype(np.float32)
    result = rng.uniform(0.3, 0.7, (20, 30, 3)).astype(np.float32)
    merged = keep_content_chrominance(result, content)
    assert np.allclose(yiq(merged)[..., 0], yiq(result)[..., 0], atol=1e-4)
    assert np.allclose(yiq(merged)[..., 1:], yiq(content)[..., 1:], atol=1e-4)


def test_histogram_mode_matches_mean_and_covariance():
    rng = np.random.default_rng(1)
    source = (rng.uniform(0, 1, (40, 40, 3)) * [0.3, 0.2, 0.1] + [0.1, 0.5, 0.2]).astype(np.float32)
    reference = rng.uniform(0.2, 0.8, (30, 50, 3)).astype(np.float32)
    reference[..., 2] = 0.5 * reference[..., 0] + 0.2
    matched = match_color_statistics(source, reference)
    assert matched.shape == source.shape
    flat, ref = matched.reshape(-1, 3), reference.reshape(-1, 3)
    assert np.allclose(flat.mean(0), ref.mean(0), atol=0.02)
    assert np.allclose(np.cov(flat, rowvar=False), np.cov(ref, rowvar=False), atol=0.005)
    assert not np.allclose(source.mean(axis=(0, 1)), ref.mean(0), atol=0.05)  # it did change
