"""Filters › Animation › Neural Style Transfer (frames) in a real GIMP 3 (headless), 3.0 and 3.2: an
animation's layers restyled into a new image with the same frames, names and timings."""

import pytest

from gimp_runner import CHECKOUT, install_plugin, run_cases


@pytest.fixture(scope="module")
def outcome(gimp_version, gimp_session):
    session = gimp_session(gimp_version)
    venv = CHECKOUT / ".venv"
    install_plugin(session.profile, venv, worker_idle_timeout=20)
    artifacts = CHECKOUT / "artifacts" / "gimp" / gimp_version / "frames"
    case_settings = {"examples": str(CHECKOUT / "examples"), "out": str(artifacts),
                     "helpers": str(CHECKOUT / "tests" / "gimp")}
    return run_cases(session, "frames_cases.py", case_settings, artifacts, venv)


def test_registered_under_filters_animation(outcome):
    case = outcome["registered"]
    assert case["found"] and "<Image>/Filters/Animation" in case["menu"]
    assert case["label"].replace("_", "") == "Neural Style Transfer (frames)..."


def test_an_animation_becomes_a_new_image_of_restyled_frames(outcome):
    case = outcome["animation"]
    assert case["ok"], case["message"]
    assert case["images_added"] == 1 and case["source_unchanged"] and case["source_count"] == 4
    assert case["names"] == ["Frame 1 (100ms) (replace)", "Frame 2 (120ms)", "Frame 3 (combine)", "Frame 4 (200ms)"]
    assert case["new_size"] == [96, 64] and case["sizes"] == [[96, 64]] * 4
    assert min(case["styled"]) > 0.04 and min(case["distinct"]) > 20, "a frame came back unstyled or blank"
    # The third frame is a smaller layer: transparent around it in the image, and so in its result.
    assert all(case["alpha_kept"])


@pytest.mark.parametrize("name", ["one_layer", "style_is_a_frame"])
def test_what_is_no_animation_is_refused_and_nothing_made(outcome, name):
    case = outcome[name]
    assert not case["ok"] and case["message"] and case["images_added"] == 0 and case["unchanged"]
