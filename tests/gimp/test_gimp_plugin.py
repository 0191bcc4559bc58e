"""The plug-in in a real GIMP 3 (headless), 3.0 and 3.2, installed by install.py into a throwaway profile."""

import pytest

from gimp_runner import CHECKOUT, install_plugin, run_cases


@pytest.fixture(scope="module")
def outcome(gimp_version, gimp_session):
    """Every case run in one GIMP `version` batch; the PNGs and the log land in artifacts/gimp/<version>/."""
    version = gimp_version
    session = gimp_session(version)
    venv = CHECKOUT / ".venv"
    config = install_plugin(session.profile, venv, worker_idle_timeout=20)
    artifacts = CHECKOUT / "artifacts" / "gimp" / version
    case_settings = {"examples": str(CHECKOUT / "examples"), "out": str(artifacts), "config": str(config)}
    return run_cases(session, "plugin_cases.py", case_settings, artifacts, venv)


def assert_styled_layer_added(case):
    assert case["ok"], case
    assert case["source_index"] >= 1 and case["added_name"].startswith(case["source_name"] + " ("), \
        "the new layer must sit directly above the source"
    assert case["source_unchanged"]
    assert case["same_size"] and case["same_offsets"]
    assert case["difference"] > 0.04, "the new layer looks like a copy of the source"
    assert case["distinct_values"] > 20, "the new layer is blank"


def test_registered_under_filters_artistic(outcome):
    case = outcome["registered"]
    assert case["found"] and "<Image>/Filters/Artistic" in case["menu"]
    assert case["label"].replace("_", "") == "Neural Style Transfer..."


def test_style_from_a_file_adds_one_styled_layer(outcome):
    case = outcome["file_style"]
    assert_styled_layer_added(case)
    assert case["count"] == 2 and case["added_name"] == "Background (starry_night)"
    assert not case["has_mask"]


def test_style_from_a_layer(outcome):
    case = outcome["layer_style"]
    assert_styled_layer_added(case)
    assert case["count"] == 3 and case["source_index"] == 2  # the style layer stays on top
    assert case["added_name"] == "Background (the_scream.jpg)"


def test_layer_in_a_group_with_offsets_and_transparency(outcome):
    case = outcome["group_offsets_alpha"]
    assert_styled_layer_added(case)
    assert case["count"] == 2, "the new layer belongs in the source's group"
    assert case["alpha_kept"]


@pytest.mark.parametrize("name", ["float_image", "gray_image"])
def test_high_bit_depth_and_gray_images(outcome, name):
    assert_styled_layer_added(outcome[name])


def test_selection_becomes_a_mask(outcome):
    case = outcome["selection"]
    assert_styled_layer_added(case)
    assert case["has_mask"]


@pytest.mark.parametrize("name", ["corrupt_style", "engine_missing", "same_layer_as_style"])
def test_failures_leave_the_image_as_it_was(outcome, name):
    case = outcome[name]
    assert not case["ok"]
    assert case["count"] == 1 and case["source_unchanged"]
    assert case["message"] and "\n" not in case["message"].strip(), case["message"]


# A folder, a pipe or a missing file as the style: GIMP itself refuses the argument (its file
# chooser's OPEN action), before the plug-in starts; the rest the engine refuses.
CORPUS = {"empty": "empty file", "truncated_jpeg": "corrupt or truncated", "text_named_jpg": "not an image",
          "png_signature_only": "not an image", "folder": "'style-file'", "fifo": "'style-file'",
          "missing": "'style-file'"}


@pytest.mark.parametrize("name", CORPUS)
def test_a_bad_style_file_leaves_layers_pixels_and_undo_history_as_they_were(outcome, name):
    case = outcome["corpus_" + name]
    assert not case["ok"]
    assert case["count"] == 1 and case["pixels_unchanged"] and not case["dirty"], case
    assert CORPUS[name] in case["message"] and "\n" not in case["message"].strip(), case["message"]


@pytest.mark.parametrize("name, added", [
    ("regions_selection_and_channel", "Background (starry_night + the_scream)"),
    ("regions_inverse_and_layer_mask", "Background (starry layer + the_scream)")])
def test_two_styles_each_in_its_region(outcome, name, added):
    """Starry Night paints the left part (the selection; outside a selection), The Scream the right (a
    channel; a layer mask): each part is nearer that style's whole-layer run than the other's, and the
    selection, being a region, does not also mask the new layer."""
    case = outcome[name]
    assert_styled_layer_added(case)
    assert case["added_name"] == added and not case["has_mask"]
    (starry_left, starry_right), (scream_left, scream_right) = case["to_starry"], case["to_scream"]
    assert starry_left < 0.8 * scream_left, "the left part is not Starry Night's"
    assert scream_right < 0.8 * starry_right, "the right part is not The Scream's"


@pytest.mark.parametrize("name, words", [
    ("region_channel_gone", "Channel \u201cgone\u201d is not in the image any more"),
    ("region_selection_empty", "nothing is selected"),
    ("region_channel_empty", "the region of style 2 is empty"),
    ("region_all_white", "style 1 would paint nowhere"),
    ("region_list_unreadable", "The style list cannot be read")])
def test_a_region_that_cannot_be_painted_is_said_and_the_image_left_alone(outcome, name, words):
    case = outcome[name]
    assert not case["ok"] and words in case["message"], case["message"]
    assert "\n" not in case["message"].strip()
    assert case["count"] == 1 and case["pixels_unchanged"] and not case["dirty"]


def test_the_style_files_used_are_kept_for_the_dialogs_palette(outcome):
    paths = outcome["recent_styles"]["paths"]
    assert paths[0].endswith("the_scream.jpg") and paths[1].endswith("starry_night.jpg"), paths
    assert len(paths) == len(set(paths)) and not any("corrupt" in path for path in paths), "only successful runs"
