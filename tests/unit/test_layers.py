"""The layers hold (pyproject.toml's import-linter contracts): the contract is the standard library only,
the plug-in and the installer import only the contract, and the engine knows nothing of the server or
the front-ends. The contracts are shown to fail when the plug-in reaches for the engine."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugin" / "neural-style-transfer"
# import-linter's own command, run by this interpreter: a script's shebang names the path its venv
# was made at, which a cached venv (as CI keeps) may have outlived.
LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def lint_imports(plugin_folder: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": f"{plugin_folder}{os.pathsep}{ROOT}"}
    return subprocess.run([*LINT_IMPORTS, "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, env=environment, timeout=120)


def test_the_layers_hold():
    result = lint_imports(PLUGIN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_a_plugin_that_imports_the_engine_breaks_its_contract(tmp_path):
    shutil.copytree(PLUGIN / "nst", tmp_path / "nst", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "nst" / "shortcut.py").write_text("from stylize_core.engine import api\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "The GIMP plug-in imports only the contract of stylize_core BROKEN" in result.stdout
    assert "nst.shortcut -> stylize_core.engine.api" in result.stdout


def test_the_plugins_entry_imports_only_gi_the_standard_library_and_its_package():
    """The entry file's name has hyphens (GIMP's rule), so import-linter cannot see it: checked here."""
    tree = ast.parse((PLUGIN / "neural-style-transfer.py").read_text())
    for node in ast.walk(tree):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in ("gi", "nst"), name
