"""Reading and writing images: any Pillow format or a float .npy, alpha kept aside.

Inside the engine an image is a float32 array (H, W, 3) of R'G'B' in 0..1 plus an
optional alpha (H, W) that is copied to the output untouched.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from .errors import InputError, StylizeError

MAX_INPUT_PIXELS = 16384 * 16384
"""Refuse larger images before decoding them (decompression bombs)."""


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


def load_picture(source, what: str = "image") -> Picture:
    """A Picture from a path, a PIL image, or a numpy array (H, W, 3|4), uint8/uint16/float."""
    if isinstance(source, Picture):
        return source
    if isinstance(source, Image.Image):
        return _from_pil(source, what)
    if isinstance(source, np.ndarray):
        return _from_array(source, what)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a folder, not an image: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{what} is an empty file: {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InputError(f"{what} is not a valid .npy array: {path} ({error})") from None
        return _from_array(array, f"{what} {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS
            with Image.open(path) as image:
                image.load()
                return _from_pil(image, f"{what} {path}")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{what} is too large to decode safely (over {MAX_INPUT_PIXELS // 10**6} "
                         f"megapixels): {path}") from None
    except UnidentifiedImageError:
        raise InputError(f"{what} is not an image Pillow can read: {path}") from None
    except PermissionError:
        raise InputError(f"{what} cannot be read (permission denied): {path}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{what} is corrupt or truncated: {path} ({error})") from None


def _from_pil(image: Image.Image, what: str) -> Picture:
    if image.width * image.height > MAX_INPUT_PIXELS:
        raise InputError(f"{what} is too large ({image.width}x{image.height})")
    image = _to_srgb(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit grayscale: scale by the type's range rather than clipping to 8 bits.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = max(1.0, float(values.max(initial=1.0)))
        gray = np.clip(values / top, 0, 1).astype(np.float32)
        return Picture(np.repeat(gray[..., None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return Picture(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]))
    return Picture(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)


def _to_srgb(image: Image.Image) -> Image.Image:
    """CMYK and images with an ICC profile become sRGB, so colours mean the same everywhere."""
    profile = image.info.get("icc_profile")
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


def _from_array(array: np.ndarray, what: str) -> Picture:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{what} must be an (H, W), (H, W, 3) or (H, W, 4) array, got shape {array.shape}")
    if array.shape[0] * array.shape[1] > MAX_INPUT_PIXELS:
        raise InputError(f"{what} is too large ({array.shape[1]}x{array.shape[0]})")
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


def to_pil(picture: Picture) -> Image.Image:
    rgb8 = np.round(np.clip(picture.rgb, 0, 1) * 255).astype(np.uint8)
    if picture.alpha is None:
        return Image.fromarray(rgb8, "RGB")
    alpha8 = np.round(np.clip(picture.alpha, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb8, alpha8]), "RGBA")


def to_array(picture: Picture) -> np.ndarray:
    """float32 (H, W, 3) or (H, W, 4) with alpha last."""
    if picture.alpha is None:
        return picture.rgb
    return np.dstack([picture.rgb, picture.alpha]).astype(np.float32)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_picture(picture: Picture, path) -> Path:
    """Write atomically (temp file in the same folder, then rename): never a half-written file."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder does not exist: {folder}")
    suffix = path.suffix.lower()
    if suffix != ".npy" and suffix[1:] not in _writable_extensions():
        raise InputError(f"cannot write images of type {suffix or '(none)'}: {path} "
                         "(use .png, .jpg, .tif, .webp or .npy)")
    handle, temp_name = tempfile.mkstemp(prefix=".stylize-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            if suffix == ".npy":
                np.save(stream, to_array(picture))
            else:
                image = to_pil(picture)
                if suffix in (".jpg", ".jpeg") and image.mode == "RGBA":
                    image = image.convert("RGB")  # JPEG has no alpha
                image.save(stream, format=Image.registered_extensions()[suffix],
                           **({"quality": 95} if suffix in (".jpg", ".jpeg", ".webp") else {}))
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes it private; an output is a normal file
        os.replace(temp_name, path)
    except PermissionError:
        _remove_quietly(temp_name)
        raise InputError(f"cannot write the output (permission denied): {path}") from None
    except OSError as error:
        _remove_quietly(temp_name)
        raise StylizeError(f"cannot write the output {path}: {error.strerror or error}") from None
    except BaseException:
        _remove_quietly(temp_name)
        raise
    return path


def _writable_extensions() -> set[str]:
    return {ext[1:] for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
