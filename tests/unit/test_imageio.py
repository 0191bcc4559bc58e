"""Image input edge cases: every odd file becomes RGB 0..1 or one clear error."""

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from stylize_core.contract.errors import InputError, StylizeError
from stylize_core.engine.imageio import Picture, load_picture, load_picture_bytes
from stylize_core.engine.saving import check_output_size, save_picture
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


@pytest.mark.slow
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
    from stylize_core.engine import saving
    old = os.urandom(5000)
    (tmp_path / f"out{suffix}").write_bytes(old)

    encode = saving._encode

    def half_then_full_disk(picture, stream, suffix):
        if isinstance(stream, io.BytesIO):  # the check that the type can be written at all
            return encode(picture, stream, suffix)
        stream.write(b"\x89PNG half of a picture")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(saving, "_encode", half_then_full_disk)
    with pytest.raises(StylizeError, match="No space left on device: free some space or write elsewhere"):
        save_picture(Picture(np.zeros((4, 4, 3), np.float32)), tmp_path / f"out{suffix}")
    assert (tmp_path / f"out{suffix}").read_bytes() == old
    assert os.listdir(tmp_path) == [f"out{suffix}"]


# --- what a picture file says about its own pixels: float range, colour space, orientation -----------

def float_tiff(path, values) -> Path:
    """A 32-bit float grayscale TIFF (Pillow's mode F), as scientific and HDR tools write them."""
    Image.fromarray(np.asarray(values, np.float32), "F").save(path)
    assert Image.open(path).mode == "F"
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_float_tiff_with_nan_or_infinity_is_refused(tmp_path, bad):
    values = np.full((16, 16), 0.5, np.float32)
    values[3, 4] = bad
    path = float_tiff(tmp_path / "f.tif", values)
    with pytest.raises(InputError, match="content image .* contains NaN or infinite values"):
        load_picture(path, "content image")
    with pytest.raises(InputError, match="content image contains NaN or infinite values"):
        load_picture_bytes(path.read_bytes(), "content image")  # what a server gets


def test_a_float_tiff_is_taken_as_zero_to_one_not_scaled_by_its_maximum(tmp_path):
    """One hot pixel must not turn the picture black: float data is 0..1, what lies outside clipped."""
    values = np.full((16, 16), 0.25, np.float32)
    values[0, 0], values[0, 1] = 40.0, -3.0
    picture = load_picture(float_tiff(tmp_path / "f.tif", values))
    assert np.allclose(picture.rgb[1:], 0.25)
    assert np.allclose(picture.rgb[0, 0], 1.0) and np.allclose(picture.rgb[0, 1], 0.0)


# CIE L*a*b* (D50, the ICC's connection space) of sRGB colours, from the sRGB and CIE formulas
# (Bradford-adapted to D50, as in Lindbloom's tables), not from the code under test.
LAB_OF_SRGB = [((54.29, 80.80, 69.89), (1.0, 0.0, 0.0)),  # sRGB red
               ((50.0, 0.0, 0.0), (0.466, 0.466, 0.466))]  # middle grey: Y = 0.184


@pytest.mark.parametrize("lab,srgb", LAB_OF_SRGB, ids=["red", "grey"])
def test_a_lab_tiff_decodes_to_its_srgb_colours(tmp_path, lab, srgb):
    lightness, a, b = lab
    path = tmp_path / "lab.tif"
    Image.new("LAB", (8, 8), (round(lightness * 2.55), round(a) + 128, round(b) + 128)).save(path)
    assert Image.open(path).tag_v2[262] == 8  # TIFF photometric CIELab, a* and b* stored signed
    for picture in (load_picture(path), load_picture_bytes(path.read_bytes())):
        assert np.allclose(picture.rgb, srgb, atol=0.03), picture.rgb[0, 0]


# The same colours' L*a*b* relative to D65, sRGB's own white, as ImageMagick writes a Lab TIFF (with a
# WhitePoint tag naming D65): from the CIE formulas with D65's white, no adaptation.
LAB_D65_OF_SRGB = [((32.30, 79.19, -107.86), (0.0, 0.0, 1.0)),  # sRGB blue
                   ((53.24, 80.09, 67.20), (1.0, 0.0, 0.0)),  # sRGB red
                   ((87.73, -86.18, 83.18), (0.0, 1.0, 0.0))]  # sRGB green


@pytest.mark.parametrize("lab,srgb", LAB_D65_OF_SRGB, ids=["blue", "red", "green"])
def test_a_lab_tiff_is_read_relative_to_the_white_point_it_names(tmp_path, lab, srgb):
    lightness, a, b = lab
    path = tmp_path / "lab-d65.tif"
    Image.new("LAB", (8, 8), (round(lightness * 2.55), round(a) + 128, round(b) + 128)).save(
        path, tiffinfo={318: (0.3127, 0.3290)})
    assert Image.open(path).tag_v2[318] is not None
    for picture in (load_picture(path), load_picture_bytes(path.read_bytes())):
        assert np.allclose(picture.rgb, srgb, atol=0.06), picture.rgb[0, 0]


def swapped_srgb_profile() -> bytes:
    """sRGB's ICC profile with its red and blue primaries exchanged (two tag names swapped in its tag
    table): a pixel stored as pure red in a picture tagged with it is sRGB's pure blue."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", profile[128:132])[0]
    entries = {bytes(profile[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    profile[red:red + 4], profile[blue:blue + 4] = b"bXYZ", b"rXYZ"
    profile[84:100] = bytes(16)  # the profile ID (an MD5 of the rest): zero means "not computed"
    return bytes(profile)


@pytest.mark.parametrize("mode,name", [("RGB", "p.png"), ("RGB", "p.jpg"), ("RGB", "p.tif"), ("RGBA", "p.png"),
                                       ("P", "p.png")])
def test_an_embedded_icc_profile_is_applied(tmp_path, mode, name):
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 100)) if mode == "RGBA" else Image.new("RGB", (8, 8), (255, 0, 0))
    if mode == "P":
        image = image.convert("P")
    image.save(tmp_path / name, icc_profile=swapped_srgb_profile())
    assert Image.open(tmp_path / name).mode == mode and Image.open(tmp_path / name).info["icc_profile"]
    for picture in (load_picture(tmp_path / name), load_picture_bytes((tmp_path / name).read_bytes())):
        assert np.allclose(picture.rgb, (0, 0, 1), atol=0.02), picture.rgb[0, 0]
        if mode == "RGBA":
            assert np.allclose(picture.alpha, 100 / 255)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue, as the sensor saw it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: "rotate 90 degrees clockwise to display": the left edge goes on top
    path = tmp_path / "camera.jpg"
    stored.save(path, exif=exif, quality=95)
    for picture in (load_picture(path), load_picture_bytes(path.read_bytes())):
        assert picture.size == (20, 40)
        assert np.allclose(picture.rgb[:16], (1, 0, 0), atol=0.05) and np.allclose(picture.rgb[24:], (0, 0, 1), atol=0.05)


def test_rewriting_an_output_keeps_its_permissions(tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"an older result")
    os.chmod(out, 0o600)
    mask = os.umask(0o022)
    try:
        save_picture(Picture(np.zeros((4, 4, 3), np.float32)), out)
    finally:
        os.umask(mask)
    assert Image.open(out).size == (4, 4)
    assert out.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name,size,limit", [("o.webp", (16384, 100), "WebP holds at most 16383 px a side"),
                                             ("o.webp", (100, 20000), "WebP holds at most 16383 px a side"),
                                             ("o.jpg", (70000, 300), "JPEG holds at most 65535 px a side")])
def test_an_output_type_too_small_for_the_result_is_refused(tmp_path, name, size, limit):
    with pytest.raises(InputError, match=f"{limit}; the result will be {size[0]}x{size[1]}: choose .png or .tif"):
        check_output_size(tmp_path / name, size)
    check_output_size(tmp_path / "o.png", size)
    check_output_size(tmp_path / name, (min(size[0], 16383), min(size[1], 16383)))
    assert os.listdir(tmp_path) == []
