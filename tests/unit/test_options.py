"""settings.py declares every option once, as a Settings field: the dialog, the wire, the CLI and
validation agree."""

import ast
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from stylize_core import InputError, Settings
from stylize_core.cli import build_parser, settings_from_args
from stylize_core.contract.settings import BY_NAME, OPTIONS
from nst import widgets

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugin" / "neural-style-transfer"
DIALOG_OPTIONS = [option for option, _ in widgets.dialog_options()]


def dialog_values(option):
    """Every value a dialog widget can hold, sampled: each choice, or the ends, the default and between."""
    widget = widgets.WIDGETS[option.name]
    if option.choices:
        return list(widgets.value_choices(option, widget))
    low, high = widgets.value_range(option, widget)
    middle = (low + high) / 2
    values = [low, high, option.default, middle if option.type is float else int(middle)]
    return [option.type(v) for v in values]


def engine_settings_for(values: dict) -> Settings:
    """What the engine makes of the dialog's values: the request's settings, over the wire (JSON)."""
    return Settings(**json.loads(json.dumps(widgets.request_settings(values)))).validate()


@pytest.mark.parametrize("option", DIALOG_OPTIONS, ids=lambda o: o.name)
def test_every_dialog_value_is_valid_to_the_engine_and_means_the_same(option):
    defaults = {widgets.argument_name(o.name): o.default for o in DIALOG_OPTIONS}
    for value in dialog_values(option):
        settings = engine_settings_for({**defaults, widgets.argument_name(option.name): value})
        assert getattr(settings, option.name) == value and type(getattr(settings, option.name)) is option.type
    assert option.problem(option.default) is None
    widget = widgets.WIDGETS[option.name]
    if widget.range:
        assert option.range[0] <= widget.range[0] <= widget.range[1] <= option.range[1]
    if widget.choices:
        assert set(widget.choices) <= set(option.choices)


def test_every_widget_is_an_option():
    assert set(widgets.WIDGETS) <= set(BY_NAME)


def test_the_dialogs_defaults_are_the_engines_defaults():
    from_dialog = engine_settings_for({widgets.argument_name(o.name): o.default for o in DIALOG_OPTIONS})
    assert from_dialog == Settings()


def test_each_field_declares_its_option():
    """The table is read off the fields: their order, defaults, and from the type hint the value type,
    whether None is allowed and whether it takes a list."""
    assert [o.name for o in OPTIONS] == [f.name for f in dataclasses.fields(Settings)]
    assert all(o.default == getattr(Settings(), o.name) and o.help for o in OPTIONS)
    assert (BY_NAME["strength"].type, BY_NAME["strength"].optional, BY_NAME["strength"].many) == (float, False, False)
    assert (BY_NAME["size"].type, BY_NAME["size"].optional, BY_NAME["size"].many) == (int, True, False)
    assert (BY_NAME["style_weights"].type, BY_NAME["style_weights"].optional, BY_NAME["style_weights"].many) == (
        float, True, True)
    assert all((o.type is str) == bool(o.choices) or o.names_a_file for o in OPTIONS)


def test_the_cli_defaults_are_the_settings_defaults():
    args = build_parser().parse_args(["c.png", "s.png", "-o", "o.png"])
    assert settings_from_args(args) == Settings()


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
    """The file's string constants, except references that use the table: look-ups in it (BY_NAME["device"])
    and the option an error names (InputError(message, "size"), option="max_size"), which the front-ends
    word from the table."""
    tree = ast.parse(path.read_text())
    references = {id(node.slice) for node in ast.walk(tree)
                  if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "BY_NAME"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")).endswith("Error"):
            references |= {id(arg) for arg in node.args[1:]}
            references |= {id(keyword.value) for keyword in node.keywords if keyword.arg == "option"}
        if isinstance(node, ast.arguments):
            positional = node.posonlyargs + node.args
            for argument, default in zip(positional[len(positional) - len(node.defaults):], node.defaults):
                if argument.arg == "option":
                    references.add(id(default))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in references}


HOMONYMS = {
    "stylize_core/contract/progress.py: 'scales'": "an optimize event's count of scales",
    "plugin/neural-style-transfer/nst/bridge.py: 'scales'": "reads that event field",
    "stylize_core/engine/saving.py: 'quality'": "Pillow's JPEG quality",
    "stylize_core/engine/clips.py: 'quality'": "Pillow's WebP quality",
}


def test_no_option_is_named_outside_settings_py():
    """An option's name, flag or plug-in name as a string anywhere else would be a second definition."""
    spellings = {spelling for o in OPTIONS for spelling in (o.name, widgets.argument_name(o.name), o.cli_flag)}
    # The installer runs the CLI as a user does (its tiny check stylization), as benchmarks and tests do;
    # the plug-in's widgets.py keys its labels by option name (test_every_widget_is_an_option).
    sources = [p for p in (ROOT / "stylize_core").rglob("*.py")
               if p.name != "settings.py" and "installer" not in p.parts]
    sources += [p for p in PLUGIN.rglob("*.py") if p.name != "widgets.py"]
    found = {f"{p.relative_to(ROOT)}: {text!r}" for p in sources for text in string_literals(p) & spellings}
    assert found == set(HOMONYMS)


def test_stroke_size_reaches_the_loss_through_each_file_once():
    """Declared (settings.py), labelled (the plug-in's widgets.py), then carried unnamed in the request's
    settings and Settings: only the engine's plan reads it (Settings.stroke_size, which style_scales may
    set per style), to size each style image per scale (schedule.style_size); the engine resizes the
    style to the plan's size and takes its Grams."""
    readers = []
    for path in list((ROOT / "stylize_core").rglob("*.py")) + list(PLUGIN.rglob("*.py")):
        text = path.read_text()
        if any(name in text for name in (".style_scale", '"style_scale"', "style-scale", "style_scale:")):
            readers.append(path.relative_to(ROOT).as_posix())
    assert sorted(readers) == ["plugin/neural-style-transfer/nst/widgets.py", "stylize_core/contract/schedule.py",
                               "stylize_core/contract/settings.py"]
    assert [path.name for path in (ROOT / "stylize_core").rglob("*.py") if ".stroke_size(" in path.read_text()] == \
        ["plan.py"]
    assert widgets.WIDGETS["style_scale"].label == "Stroke si_ze"


def test_every_mnemonic_in_the_dialog_is_unique():
    """Alt+letter must reach one widget: the options', the plug-in's own fields and GIMP's buttons."""
    plugin = (PLUGIN / "neural-style-transfer.py").read_text()
    dialog = (PLUGIN / "nst" / "dialog.py").read_text()
    own = re.findall(r'add_\w+_argument\("[\w-]+",\s*"([^"]*_[^"]*)"', plugin) + ["_Advanced"]
    own += re.findall(r'(?:labelled|new_with_mnemonic)\("([^"]*_[^"]*)"', dialog)
    assert {"Region o_f the layer", "Add an e_xtra style"} <= set(own)
    assert '"_Advanced"' in dialog and {"Style so_urce", "_Preview"} <= set(own) and len(own) >= 6
    buttons = ["_Help", "_Reset", "_Cancel", "_OK", "_Load Saved Settings", "_Save Settings"]  # GIMP's own
    labels = own + buttons + [widget.label for widget in widgets.WIDGETS.values()]
    keys = [label[label.index("_") + 1].lower() for label in labels]
    assert len(keys) == len(set(keys)), sorted(zip(keys, labels))
