"""Pixels between GIMP and the engine, with the standard library only (GIMP's Python has no numpy):
float32 RGBA as the bytes of a .npy file (what the engine server takes and returns), and 8-bit RGBA
for the preview's GdkPixbuf."""

from __future__ import annotations

import array
import struct
import sys


class PixelError(ValueError):
    """Pixel data that is not what it should be, in one line."""


def npy_bytes(data: bytes, height: int, width: int, channels: int = 4) -> bytes:
    """float32 pixels (rows of width * channels little-endian floats) as the bytes of a .npy file."""
    if len(data) != height * width * channels * 4:
        raise PixelError(f"pixel data has {len(data)} bytes, expected {height}x{width}x{channels} floats")
    return npy_header("<f4", (height, width, channels)) + bytes(data)


def mask_npy_bytes(data: bytes, height: int, width: int) -> bytes:
    """8-bit coverage (rows of width bytes) as the bytes of an (H, W, 1) uint8 .npy file."""
    if len(data) != height * width:
        raise PixelError(f"mask data has {len(data)} bytes, expected {height}x{width}")
    return npy_header("|u1", (height, width, 1)) + bytes(data)


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, ", ".join(map(str, shape)))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


def parse_npy(blob: bytes) -> tuple[bytes, tuple[int, ...]]:
    """(raw little-endian float32 bytes, shape) of a C-order float32 .npy file's bytes."""
    if blob[:6] != b"\x93NUMPY" or len(blob) < 10:
        raise PixelError("the engine's result is not a .npy file")
    size_format, start = ("<H", 10) if blob[6] == 1 else ("<I", 12)
    length = struct.unpack(size_format, blob[8:start])[0]
    header = blob[start:start + length].decode("latin1")
    if "'<f4'" not in header or "'fortran_order': False" not in header:
        raise PixelError("the engine's result is not a float32 C-order array")
    shape = tuple(int(n) for n in header.split("(")[1].split(")")[0].split(",") if n.strip())
    data = blob[start + length:]
    expected = 4
    for n in shape:
        expected *= n
    if len(data) != expected:
        raise PixelError("the engine's result is truncated")
    return data, shape


def rgba8(npy: bytes) -> tuple[bytes, int, int]:
    """(RGBA bytes, width, height) of the engine's float32 (H, W, 3 or 4) result, 8 bits a channel."""
    data, shape = parse_npy(npy)
    if len(shape) != 3 or shape[2] not in (3, 4):
        raise PixelError(f"the engine returned a picture of shape {shape}")
    height, width, channels = shape
    floats = array.array("f")
    floats.frombytes(data)
    if sys.byteorder == "big":
        floats.byteswap()
    levels = bytes(min(255, max(0, int(value * 255.0 + 0.5))) for value in floats)
    if channels == 3:
        rgba = bytearray(height * width * 4)
        for channel in range(3):
            rgba[channel::4] = levels[channel::3]
        rgba[3::4] = b"\xff" * (height * width)
        levels = bytes(rgba)
    return levels, width, height


def scaled_region(bounds: tuple[int, int, int, int], side: int) -> tuple[float, tuple[int, int, int, int]]:
    """(scale, (x, y, width, height) in scaled pixels) to read the region `bounds` (x, y, width,
    height) at most `side` px on its long side (never enlarged)."""
    x, y, width, height = bounds
    scale = min(1.0, side / max(width, height))
    return scale, (round(x * scale), round(y * scale), max(1, round(width * scale)), max(1, round(height * scale)))
