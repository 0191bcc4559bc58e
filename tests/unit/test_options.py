"""options.py is the one definition of every option: the dialog, the bridge, the CLI and Settings agree."""

import ast
import math
import re
import sys
from pathlib import Path

import pytest

from stylize_core import InputError, Settings
from stylize_core.cli import build_parser, settings_from_args
from stylize_core.contract.options import BY_NAME, DIALOG_OPTIONS, OPTIONS

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugin" / "neural-style-transfer"
import nst_bridge  # noqa: E402
from stylize_core.contract import options as options_module  # noqa: E402


def dialog_values(option):
    """Every value a dialog widget can hold, sampled: each choice, or the ends, the default and between."""
    if option.choices:
        return list(option.dialog_choices)
    low, high = option.dialog_range
    middle = (low + high) / 2
    values = [low, high, option.default, middle if option.type is float else int(middle)]
    return [option.type(v) for v in values]


def engine_settings_for(values: dict) -> Settings:
    argv = nst_bridge.engine_arguments(options_module, values, "content.npy", "style.png", "out.npy", "/tmp/w")
    return settings_from_args(build_parser().parse_args(argv)).validate()


@pytest.mark.parametrize("option", DIALOG_OPTIONS, ids=lambda o: o.name)
def test_every_dialog_value_is_valid_to_the_engine_and_means_the_same(option):
    defaults = {o.plugin_name: o.default for o in DIALOG_OPTIONS}
    for value in dialog_values(option):
        settings = engine_settings_for({**defaults, option.plugin_name: value})
        assert getattr(settings, option.name) == value, (option.name, value)
    assert option.problem(option.default) is None
    if option.dialog.range:
        assert option.range[0] <= option.dialog.range[0] <= option.dialog.range[1] <= option.range[1]
    if option.dialog.choices:
        assert set(option.dialog.choices) <= set(option.choices)


def test_the_dialogs_defaults_are_the_engines_defaults():
    from_dialog = engine_settings_for({o.plugin_name: o.default for o in DIALOG_OPTIONS})
    assert from_dialog == Settings()


def test_the_cli_defaults_are_the_settings_defaults():
    args = build_parser().parse_args(["c.png", "s.png", "-o", "o.png"])
    assert settings_from_args(args) == Settings()
    assert [f for f in Settings.__dataclass_fields__] == [o.name for o in OPTIONS]


def test_iterations_zero_means_the_quality_setting_everywhere():
    from stylize_core.contract.schedule import composition_iterations
    assert composition_iterations(3, 0, "fast") == [80, 40, 12]
    assert composition_iterations(2, 7, "fast") == [7, 7]


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.range], ids=lambda o: o.name)
def test_out_of_range_nan_and_infinite_values_are_refused(option):
    low, high = option.range
    bad = [low - 1, high + 1] + ([math.nan, math.inf, -math.inf] if option.type is float else [1.5, "3"])
    for value in bad:
        value = [value] if option.many else value
        with pytest.raises(InputError, match=option.name.replace("_", " ")):
            Settings(**{option.name: value}).validate(n_styles=1)


def test_choices_are_checked():
    with pytest.raises(InputError, match="quality must be one of fast, balanced, best"):
        Settings(quality="ultra").validate()


def string_literals(path: Path) -> set[str]:
    """The file's string constants, except look-ups in the table (BY_NAME["device"] uses the definition)."""
    tree = ast.parse(path.read_text())
    lookups = {id(node.slice) for node in ast.walk(tree)
               if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "BY_NAME"}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in lookups}


HOMONYMS = {
    "stylize_core/contract/progress.py: 'scales'": "an optimize event's count of scales",
    "plugin/neural-style-transfer/nst_bridge.py: 'scales'": "reads that event field",
    "stylize_core/engine/imageio.py: 'quality'": "Pillow's JPEG quality",
}


def test_no_option_is_named_outside_options_py():
    """An option's name, flag or plug-in name as a string anywhere else would be a second definition."""
    spellings = {spelling for o in OPTIONS for spelling in (o.name, o.plugin_name, o.cli_flag)}
    # The installer runs the CLI as a user does (its tiny check stylization), as benchmarks and tests do.
    sources = [p for p in (ROOT / "stylize_core").rglob("*.py")
               if p.name != "options.py" and "installer" not in p.parts]
    sources += list(PLUGIN.glob("*.py"))
    found = {f"{p.relative_to(ROOT)}: {text!r}" for p in sources for text in string_literals(p) & spellings}
    assert found == set(HOMONYMS)


def test_stroke_size_reaches_the_loss_through_each_file_once():
    """Dialog -> bridge -> CLI -> Settings -> engine: only the engine reads the value from the settings,
    and the plan, which sizes the painting's pass through the network by it (pyramid.style_size)."""
    readers = []
    for path in list((ROOT / "stylize_core").rglob("*.py")) + list(PLUGIN.glob("*.py")):
        text = path.read_text()
        if any(name in text for name in (".style_scale", '"style_scale"', "style-scale")):
            readers.append(path.relative_to(ROOT).as_posix())
    assert sorted(readers) == ["stylize_core/contract/options.py", "stylize_core/engine/api.py", "stylize_core/engine/plan.py"]
    assert BY_NAME["style_scale"].dialog.label == "Stroke si_ze"


def test_every_mnemonic_in_the_dialog_is_unique():
    """Alt+letter must reach one widget: the options', the plug-in's own fields and GIMP's buttons."""
    plugin = (PLUGIN / "neural-style-transfer.py").read_text()
    own = re.findall(r'add_\w+_argument\("[\w-]+",\s*"([^"]*_[^"]*)"', plugin) + ["_Advanced"]
    assert "_Advanced" in plugin and {"Style so_urce", "_Preview"} <= set(own) and len(own) >= 6
    buttons = ["_Help", "_Reset", "_Cancel", "_OK"]
    labels = own + buttons + [option.dialog.label for option in DIALOG_OPTIONS]
    keys = [label[label.index("_") + 1].lower() for label in labels]
    assert len(keys) == len(set(keys)), sorted(zip(keys, labels))
