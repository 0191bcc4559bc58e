"""Neural style transfer (Gatys et al.) with VGG19: the engine of the GIMP plug-in.

`import stylize_core` is cheap: the engine (and torch) is imported on first use of
`stylize` or `stylize_picture`, so the CLI's --help and option errors answer at once.
"""

from .contract.errors import InputError, OutOfMemoryError, StylizeError
from .contract.settings import OPTIONS
from .contract.progress import Progress
from .contract.settings import Settings

__all__ = ["stylize", "stylize_picture", "Settings", "OPTIONS", "Progress",
           "StylizeError", "InputError", "OutOfMemoryError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("stylize", "stylize_picture"):
        from .engine import api as engine
        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
