"""Neural style transfer (Gatys et al.) with VGG19: the engine of the GIMP plug-in.

`import stylize_core` is cheap: the engine (and torch) is imported on first use of
`stylize` or `stylize_picture`, so the CLI's --help and option errors answer at once.
"""

from .errors import InputError, OutOfMemoryError, StylizeError
from .options import OPTIONS
from .progress import Progress
from .settings import Settings

__all__ = ["stylize", "stylize_picture", "Settings", "OPTIONS", "Progress",
           "StylizeError", "InputError", "OutOfMemoryError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("stylize", "stylize_picture"):
        from . import engine
        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
