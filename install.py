#!/usr/bin/env python3
"""Install the neural style transfer engine and its GIMP 3 plug-in.

    python3 install.py                 # venv + engine + check + plug-in in every GIMP 3 profile
    python3 install.py --help          # all options

Standard library only, so that it runs on a bare Python before anything is installed.
Every failure ends with one message that names the problem and the fix, and a non-zero
exit status; --debug adds the traceback. The work is done by stylize_core/installer/.
"""

import sys


if __name__ == "__main__":
    # Checked before the installer is loaded: it is written for Python 3.10 (preflight.MIN_PYTHON).
    if tuple(sys.version_info[:2]) < (3, 10):
        print("error: Python " + sys.version.split()[0] + " is too old: install.py needs Python 3.10 or newer\n"
              "  fix: run it with a newer Python, e.g. python3.12 install.py", file=sys.stderr)
        sys.exit(1)
    # The checkout's folder is on sys.path (it holds this file): stylize_core's own __init__ and its
    # installer and contract packages import nothing beyond the standard library (import-linter checks).
    from stylize_core.installer import cli
    sys.exit(cli.main())
