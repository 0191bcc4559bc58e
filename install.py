#!/usr/bin/env python3
"""Install the neural style transfer engine and its GIMP 3 plug-in.

    python3 install.py                 # venv + engine + check + plug-in in every GIMP 3 profile
    python3 install.py --help          # all options

Standard library only, so that it runs on a bare Python before anything is installed.
Every failure ends with one message that names the problem and the fix, and a non-zero
exit status; --debug adds the traceback. The work is done by stylize_core/installer/.
"""

import importlib
import importlib.util
import sys
from pathlib import Path

PACKAGE_NAME = "stylize_installer"


def load_installer():
    """The installer's command line (stylize_core/installer/cli.py).

    The folder is loaded by file path as the top-level package `stylize_installer`, not
    imported as `stylize_core.installer`: that would first run stylize_core/__init__.py,
    which may import the engine and torch, and this runs on a Python without them. Not putting
    stylize_core/ on sys.path either keeps its modules from shadowing others (such as pip's
    `installer` package) by their short names.
    """
    folder = Path(__file__).resolve().parent / "stylize_core" / "installer"
    spec = importlib.util.spec_from_file_location(PACKAGE_NAME, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = package  # the package's relative imports look it up here
    spec.loader.exec_module(package)
    return importlib.import_module(PACKAGE_NAME + ".cli")


if __name__ == "__main__":
    # Checked before the installer is loaded: it is written for Python 3.10 (preflight.MIN_PYTHON).
    if tuple(sys.version_info[:2]) < (3, 10):
        print("error: Python " + sys.version.split()[0] + " is too old: install.py needs Python 3.10 or newer\n"
              "  fix: run it with a newer Python, e.g. python3.12 install.py", file=sys.stderr)
        sys.exit(1)
    sys.exit(load_installer().main())
