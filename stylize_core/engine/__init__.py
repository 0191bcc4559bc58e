"""The Gatys et al. optimisation on VGG19 features (torch): `stylize(...)` in api.py.

Nothing is imported here: a module that needs no torch (clips.py, imageio.py, clipjob.py's checks) can
be imported without loading it, as a cluster's client does (torch loads in its workers).
"""
