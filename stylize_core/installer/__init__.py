"""The installer behind install.py: standard library only, because it runs on a bare Python
before the virtual environment (and torch) exists.

install.py loads this folder as the top-level package `stylize_installer`, so that
stylize_core/__init__.py, which may import the engine, is not run. One concern per module:

    console        what the user reads: steps, notes, warnings, and InstallError (problem + fix)
    commands       running other programs, keeping their output for error messages
    paths          comparing paths: inside a folder, first existing parent, without duplicates
    preflight      checks before installing: this Python, venv support, writable folders, disk space
    venv_setup     the virtual environment: its python, creation or reuse, pip in it, removal
    torch_variant  the GPU found (from the vendors' tools' output), the build of torch for it, and
                   what build a venv's torch is
    torch_install  that build into the venv: kept, installed or replaced; the user's pip settings; the
                   variant index tried, with PyPI's default torch to fall back to
    pip_install    `pip install -e` of the project (and of torch before it), its progress, and what its
                   failures mean
    engine_check   which device the engine will use, and a tiny stylization that proves it runs
    gimp_profiles  where GIMP 3 keeps its profiles (Flatpak included), and advice when none is found
    plugin_files   the plug-in's files in a profile: install and uninstall with a manifest
    cli            the command line: flags, the install and uninstall steps, main()
"""
