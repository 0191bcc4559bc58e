"""What the benchmarks take from ../shared beside the checkout: its instruments, and pictures fitted to size."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def shared_tool(name: str):
    """A measuring instrument from ../shared/tools, imported (not copied), or an exit saying it is missing."""
    folder = SHARED / "tools"
    if not (folder / f"{name}.py").is_file():
        sys.exit(f"{Path(sys.argv[0]).name} needs {folder / name}.py (the shared instruments, beside the checkout)")
    sys.path.insert(0, str(folder))
    return __import__(name)


def fitted(picture: Image.Image, size: int, even: bool = False) -> Image.Image:
    """The picture in RGB with its longer side `size`; with `even`, both sides even (as video encoders want)."""
    scale = size / max(picture.size)
    width, height = round(picture.width * scale), round(picture.height * scale)
    if even:
        width, height = width // 2 * 2, height // 2 * 2
    return picture.convert("RGB").resize((width, height), Image.LANCZOS)
