"""Reading images: any Pillow format or a float .npy, from a file or a client's bytes, alpha kept aside
(saving.py writes the result).

Inside the engine an image is a float32 array (H, W, 3) of sRGB R'G'B' in 0..1 plus an
optional alpha (H, W) that is copied to the output untouched. A file is read as a viewer
shows it: turned as its EXIF orientation says, its ICC profile (or CIE L*a*b*) converted
to sRGB, float data taken as 0..1.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..contract.errors import InputError
from .hostmemory import available_bytes

MAX_INPUT_PIXELS = 16384 * 16384
"""Refuse larger images before decoding them (decompression bombs)."""
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS  # Pillow's own guard, at the same bound: set once, here
DECODE_BYTES_PER_PIXEL = 32
"""Peak memory of reading one pixel: Pillow's 8-bit decode, its RGB conversion and two float32 copies
(measured: a 16000x16000 PNG took 7.7 GB, 30 bytes a pixel)."""
DECODE_MEMORY_SHARE = 0.5
"""An input may take at most this share of the free memory to decode: the run itself needs the rest."""


@dataclass
class Picture:
    rgb: np.ndarray
    """float32 (H, W, 3), 0..1"""
    alpha: np.ndarray | None = None
    """float32 (H, W), 0..1, or None when the source had no alpha."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow counts."""
        return self.rgb.shape[1], self.rgb.shape[0]


def load_picture(source, what: str = "image", memory_limit: int | None = None) -> Picture:
    """A Picture from a path, a PIL image, or a numpy array (H, W, 3|4), uint8/uint16/float.

    A file whose decode would take more than memory_limit bytes (default: a share of the
    free memory) is refused from its header, before it is decoded.
    """
    if isinstance(source, Picture):
        return source
    if isinstance(source, Image.Image):
        return _from_pil(source, what)
    if isinstance(source, np.ndarray):
        return _from_array(source, what)
    path = Path(source)
    _check_readable_file(path, what)
    budget = memory_limit if memory_limit is not None else int(available_bytes() * DECODE_MEMORY_SHARE)
    if path.suffix.lower() == ".npy":
        try:
            header = np.load(path, mmap_mode="r", allow_pickle=False)
            _check_decode_memory(header.shape[1::-1] if header.ndim >= 2 else (0, 0), budget, what, path)
            array = np.array(header)
        except (ValueError, OSError, EOFError) as error:
            raise InputError(f"{what} is not a valid .npy array: {path} ({error})") from None
        return _from_array(array, f"{what} {path}")
    return _decode(path, budget, what, f": {path}", None, f"{what} is not an image Pillow can read: {path}")


WIRE_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
"""What a server decodes from a client's bytes besides .npy: the usual picture files, no exotic decoder."""


def load_picture_bytes(data: bytes, what: str = "image", memory_limit: int | None = None) -> Picture:
    """A Picture from a file's bytes, as a server gets them: a .npy array or a picture file in one of
    WIRE_IMAGE_FORMATS, with the same checks as a file (size before decoding, memory, shape)."""
    budget = memory_limit if memory_limit is not None else int(available_bytes() * DECODE_MEMORY_SHARE)
    if not data:
        raise InputError(f"{what} is an empty file")
    if data[:6] == b"\x93NUMPY":
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as error:  # numpy raises many kinds for a malformed header
            raise InputError(f"{what} is not a valid .npy array ({type(error).__name__}: {error})") from None
        if not isinstance(array, np.ndarray):
            raise InputError(f"{what} is not a .npy array")
        _check_decode_memory(array.shape[1::-1] if array.ndim >= 2 else (0, 0), budget, what, "(sent)")
        return _from_array(array, what)
    return _decode(io.BytesIO(data), budget, what, "", WIRE_IMAGE_FORMATS,
                   f"{what} is not an image: neither a .npy array nor a picture in {', '.join(WIRE_IMAGE_FORMATS)}")


def _decode(source, budget: int, what: str, where: str, formats, not_an_image: str) -> Picture:
    """A picture file (a path, or a stream of a client's bytes) decoded within `budget` bytes, its size
    checked from its header first; `where` (": PATH" or "") ends each message, `not_an_image` is said
    of what Pillow does not recognise (among `formats`, where given)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=formats) as image:
                _check_decode_memory(image.size, budget, what, where.removeprefix(": ") or "(sent)")
                image.load()
                return _from_file(image, what + (f" {where[2:]}" if where else ""))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{what} is too large to decode safely (over {MAX_INPUT_PIXELS // 10**6} "
                         f"megapixels){where}") from None
    except UnidentifiedImageError:
        raise InputError(not_an_image) from None
    except PermissionError:
        raise InputError(f"{what} cannot be read (permission denied){where}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{what} is corrupt or truncated{where} ({error})") from None


def _check_readable_file(path: Path, what: str) -> None:
    """A regular, non-empty, readable file; anything else (a folder, a FIFO that would block) is refused."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as error:
        raise InputError(f"{what} cannot be read ({error.strerror}): {path}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} is a folder, not an image: {path}")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} is not a regular file (a pipe or a device?): {path}")
    if info.st_size == 0:
        raise InputError(f"{what} is an empty file: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} cannot be read (permission denied): {path}")


def _check_decode_memory(size: tuple[int, int], budget: int, what: str, path) -> None:
    width, height = size
    needed = width * height * DECODE_BYTES_PER_PIXEL
    if needed > budget:
        raise InputError(f"{what} is too large for the memory there is: {width}x{height} pixels need about "
                         f"{needed / 2**30:.1f} GB to read, {budget / 2**30:.1f} GB can be spared: "
                         f"scale it down first: {path}")


def _from_file(image: Image.Image, what: str) -> Picture:
    """A decoded file's picture, the way up its EXIF orientation says (a camera's portrait shot is
    stored sideways): turned in place, so that no second copy of the pixels is made."""
    ImageOps.exif_transpose(image, in_place=True)
    return _from_pil(image, what)


def _from_pil(image: Image.Image, what: str) -> Picture:
    if image.width * image.height > MAX_INPUT_PIXELS:
        raise InputError(f"{what} is too large ({image.width}x{image.height})")
    image = _to_srgb(image)
    mode = image.mode
    if mode == "F":
        # 32-bit float (a float TIFF): 0..1 like float .npy, what lies outside clipped, as GIMP and
        # most tools take float data; scaling by the maximum would let one hot pixel blacken the rest.
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise InputError(f"{what} contains NaN or infinite values")
        gray = np.clip(values, 0, 1)
        return Picture(np.repeat(gray[..., None], 3, axis=2))
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit integer grayscale: scale by the type's range rather than clipping to 8 bits.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(values / top, 0, 1).astype(np.float32)
        return Picture(np.repeat(gray[..., None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return Picture(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]))
    return Picture(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)


def _to_srgb(image: Image.Image) -> Image.Image:
    """CMYK and images with an ICC profile become sRGB, so colours mean the same everywhere; so does
    CIE L*a*b* (a TIFF's photometric CIELab): relative to the white its WhitePoint tag names (ImageMagick
    writes D65), else to D50 as libtiff and Photoshop take it, which Pillow's own convert does."""
    white = getattr(image, "tag_v2", {}).get(TIFF_WHITE_POINT) if image.mode == "LAB" else None
    if white is not None and len(white) == 2 and 0 < float(white[1]) < 1 and 0 < float(white[0]) < 1 - float(white[1]):
        return Image.fromarray(lab_to_srgb8(np.asarray(image), white), "RGB")
    profile = image.info.get("icc_profile")
    if profile and image.mode in ("P", "PA"):
        # A palette's colours are in the profile's space too: expand them, then convert.
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    if profile and image.mode in ("RGB", "RGBA", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                             outputMode=output_mode)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall back to Pillow's plain conversion
    if image.mode == "CMYK":
        return image.convert("RGB")
    return image


TIFF_WHITE_POINT = 318
D65 = np.array([0.95047, 1.0, 1.08883])
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
XYZ_TO_LINEAR_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


def lab_to_srgb8(lab8: np.ndarray, white_xy: tuple[float, float]) -> np.ndarray:
    """8-bit L*a*b* as a TIFF stores it and Pillow's buffer holds it (L 0..255 for 0..100, a* and b*
    signed bytes), relative to the white of chromaticity `white_xy`, as 8-bit sRGB: CIE's Lab to XYZ,
    Bradford's adaptation to sRGB's D65 white, sRGB's matrix and transfer curve."""
    lightness = lab8[..., 0].astype(np.float64) * (100.0 / 255.0)
    a, b = (lab8[..., channel].view(np.int8).astype(np.float64) for channel in (1, 2))
    fy = (lightness + 16.0) / 116.0
    f = np.stack([fy + a / 500.0, fy, fy - b / 200.0], axis=-1)
    delta = 6.0 / 29.0
    relative = np.where(f > delta, f**3, 3 * delta**2 * (f - 4.0 / 29.0))
    x, y = (float(value) for value in white_xy)  # a TIFF's rationals
    white = np.array([x / y, 1.0, (1.0 - x - y) / y])
    cone_gain = (BRADFORD @ D65) / (BRADFORD @ white)
    to_linear_srgb = XYZ_TO_LINEAR_SRGB @ np.linalg.inv(BRADFORD) @ np.diag(cone_gain) @ BRADFORD @ np.diag(white)
    linear = np.clip(relative @ to_linear_srgb.T, 0.0, 1.0)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.round(encoded * 255.0).astype(np.uint8)


def _from_array(array: np.ndarray, what: str) -> Picture:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{what} must be an (H, W), (H, W, 3) or (H, W, 4) array, got shape {array.shape}")
    if array.shape[0] * array.shape[1] > MAX_INPUT_PIXELS:
        raise InputError(f"{what} is too large ({array.shape[1]}x{array.shape[0]})")
    if array.size == 0:
        raise InputError(f"{what} has no pixels (shape {array.shape})")
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise InputError(f"{what} contains NaN or infinite values")
        values = np.clip(values, 0.0, 1.0)
    else:
        raise InputError(f"{what} has unsupported pixel type {array.dtype}")
    channels = values.shape[2]
    color = values[..., :1].repeat(3, axis=2) if channels <= 2 else values[..., :3]
    alpha = values[..., channels - 1] if channels in (2, 4) else None
    return Picture(np.ascontiguousarray(color),
                   None if alpha is None else np.ascontiguousarray(alpha))


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, 3) float to (width, height) = size with antialiased bicubic, per channel."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    channels = [np.asarray(Image.fromarray(rgb[..., c], mode="F").resize(size, Image.BICUBIC))
                for c in range(rgb.shape[2])]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0).astype(np.float32)


def eight_bit(values: np.ndarray) -> np.ndarray:
    """Values of 0..1 as 8 bits, as a PNG holds them."""
    return np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)


def from_eight_bit(rgb: np.ndarray) -> Picture:
    """A picture of 8-bit RGB (H, W, 3)."""
    return Picture(rgb.astype(np.float32) / 255)


def to_pil(picture: Picture) -> Image.Image:
    rgb8 = eight_bit(picture.rgb)
    if picture.alpha is None:
        return Image.fromarray(rgb8, "RGB")
    return Image.fromarray(np.dstack([rgb8, eight_bit(picture.alpha)]), "RGBA")


def npy_bytes(picture: Picture) -> bytes:
    """The picture as .npy bytes: float32 (H, W, 3), or (H, W, 4) with alpha."""
    stream = io.BytesIO()
    np.save(stream, to_array(picture).astype("<f4", copy=False))
    return stream.getvalue()


def to_array(picture: Picture) -> np.ndarray:
    """float32 (H, W, 3) or (H, W, 4) with alpha last."""
    if picture.alpha is None:
        return picture.rgb
    return np.dstack([picture.rgb, picture.alpha]).astype(np.float32)
