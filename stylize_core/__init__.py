"""Neural style transfer (Gatys et al.) with VGG19: the engine of the GIMP plug-in."""

from .engine import stylize, stylize_picture
from .errors import InputError, OutOfMemoryError, StylizeError
from .progress import Progress
from .settings import PRESETS, Settings

__all__ = ["stylize", "stylize_picture", "Settings", "PRESETS", "Progress",
           "StylizeError", "InputError", "OutOfMemoryError"]
__version__ = "0.1.0"
