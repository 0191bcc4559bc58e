"""Image input edge cases: every odd file becomes RGB 0..1 or one clear error."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from stylize_core.errors import InputError, StylizeError
from stylize_core.imageio import Picture, load_picture, save_picture
from helpers import CONTENT


def save(tmp_path, image, name):
    path = tmp_path / name
    image.save(path)
    return path


def test_rgb_jpeg(tmp_path):
    picture = load_picture(save(tmp_path, Image.new("RGB", (40, 30), (255, 128, 0)), "a.jpg"))
    assert picture.rgb.shape == (30, 40, 3) and picture.rgb.dtype == np.float32
    assert picture.alpha is None
    assert picture.rgb[..., 0].mean() > 0.95 and picture.rgb[..., 2].mean() < 0.05


def test_grayscale_becomes_three_equal_channels(tmp_path):
    picture = load_picture(save(tmp_path, Image.new("L", (20, 10), 64), "g.png"))
    assert picture.rgb.shape == (10, 20, 3)
    assert np.allclose(picture.rgb, 64 / 255)


def test_sixteen_bit_grayscale_keeps_its_range(tmp_path):
    array = np.full((10, 20), 30000, dtype=np.uint16)
    picture = load_picture(save(tmp_path, Image.fromarray(array), "g16.png"))
    assert np.allclose(picture.rgb, 30000 / 65535, atol=1e-4)


def test_palette_with_transparency_keeps_alpha(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    image.putpixel((0, 0), 0)
    picture = load_picture(save(tmp_path, image, "p.png"))
    assert picture.alpha is not None and picture.alpha[0, 0] == 0 and picture.alpha[1, 1] == 1
    assert picture.rgb[1, 1, 0] == 1


def test_cmyk_is_converted(tmp_path):
    picture = load_picture(save(tmp_path, Image.new("CMYK", (10, 10), (0, 255, 255, 0)), "c.jpg"))
    assert picture.rgb[..., 0].mean() > 0.9 and picture.rgb[..., 1].mean() < 0.15


def test_rgba_alpha_is_kept_apart(tmp_path):
    image = Image.new("RGBA", (10, 6), (10, 20, 30, 128))
    picture = load_picture(save(tmp_path, image, "a.png"))
    assert picture.alpha.shape == (6, 10) and np.allclose(picture.alpha, 128 / 255)


@pytest.mark.parametrize("dtype,top", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1.0)])
def test_arrays(dtype, top):
    array = (np.ones((4, 5, 4)) * top / 2).astype(dtype)
    picture = load_picture(array)
    assert picture.rgb.shape == (4, 5, 3) and picture.alpha.shape == (4, 5)
    assert np.allclose(picture.rgb, 0.5, atol=0.01)


def test_npy_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.uniform(0, 1, (7, 9, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    picture = load_picture(tmp_path / "x.npy")
    save_picture(picture, tmp_path / "y.npy")
    assert np.array_equal(np.load(tmp_path / "y.npy"), array)


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"hello, not an image"), "not an image"),
    (lambda p: p.mkdir(), "folder"),
])
def test_bad_files(tmp_path, make, message):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(InputError, match=message):
        load_picture(path)


def test_truncated_png(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (1, 2, 3)).save(buffer, "PNG")
    (tmp_path / "t.png").write_bytes(buffer.getvalue()[:200])
    with pytest.raises(InputError, match="corrupt"):
        load_picture(tmp_path / "t.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    # A 1-bit PNG that claims 40000 x 40000 pixels is tiny on disk.
    Image.new("1", (40000, 40000)).save(tmp_path / "bomb.png")
    assert os.path.getsize(tmp_path / "bomb.png") < 1_000_000
    with pytest.raises(InputError, match="too large"):
        load_picture(tmp_path / "bomb.png")


def test_bad_arrays():
    with pytest.raises(InputError, match="shape"):
        load_picture(np.zeros((4, 4, 5), np.float32))
    with pytest.raises(InputError, match="NaN"):
        load_picture(np.full((4, 4, 3), np.nan, np.float32))


def test_save_is_atomic_and_leaves_nothing_on_failure(tmp_path):
    picture = Picture(np.zeros((4, 4, 3), np.float32), np.ones((4, 4), np.float32))
    save_picture(picture, tmp_path / "ok.png")
    assert Image.open(tmp_path / "ok.png").mode == "RGBA"
    assert sorted(os.listdir(tmp_path)) == ["ok.png"]
    with pytest.raises(InputError, match="cannot write images of type"):
        save_picture(picture, tmp_path / "out.xyz")
    with pytest.raises(InputError, match="folder does not exist"):
        save_picture(picture, tmp_path / "missing" / "out.png")
    assert sorted(os.listdir(tmp_path)) == ["ok.png"]


def test_saved_file_has_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = save_picture(load_picture(CONTENT), tmp_path / "out.png")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_a_failure_during_the_write_leaves_the_old_file_whole(tmp_path, monkeypatch, suffix):
    """The encoder has written half the file when the disk fills up: the old output stays as it was."""
    import errno
    from stylize_core import imageio
    old = os.urandom(5000)
    (tmp_path / f"out{suffix}").write_bytes(old)

    encode = imageio._encode

    def half_then_full_disk(picture, stream, suffix):
        if isinstance(stream, io.BytesIO):  # the check that the type can be written at all
            return encode(picture, stream, suffix)
        stream.write(b"\x89PNG half of a picture")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(imageio, "_encode", half_then_full_disk)
    with pytest.raises(StylizeError, match="No space left on device: free some space or write elsewhere"):
        save_picture(Picture(np.zeros((4, 4, 3), np.float32)), tmp_path / f"out{suffix}")
    assert (tmp_path / f"out{suffix}").read_bytes() == old
    assert os.listdir(tmp_path) == [f"out{suffix}"]
