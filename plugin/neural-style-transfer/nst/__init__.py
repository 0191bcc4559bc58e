"""The Neural Style Transfer (NST) plug-in's modules; neural-style-transfer.py beside this folder is
the entry GIMP runs.

GIMP-free, unit-tested without GIMP: widgets.py (how options appear in the dialog), bridge.py (the
config, runs on the engine server, errors and progress in the dialog's words, the time line),
preview.py (the live preview's runner), pixels.py (float32 pixels as .npy bytes and back).
GIMP's: dialog.py (the dialog, one class), layers.py (reading layers, inserting the result).

Of the project these import only `stylize_core.contract` (standard library only), which install.py
copies beside the plug-in; import-linter checks it.
"""
