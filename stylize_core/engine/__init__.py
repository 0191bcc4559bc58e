"""The Gatys et al. optimisation on VGG19 features (torch): `stylize(...)` in api.py."""

from .api import stylize, stylize_picture

__all__ = ["stylize", "stylize_picture"]
