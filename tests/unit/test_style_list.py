"""The dialog's style list without GIMP (nst/styles.py): the text it is kept in between runs, the
settings and regions a run request gets from it, and when the selection still masks the new layer."""

import io
import json

import numpy as np
import pytest

from nst import pixels
from nst.styles import (MAX_STYLES, STROKE_RANGE, FurtherStyle, Region, StyleListError, further_styles_text,
                        masks_output_with_selection, parse_further_styles, regions_of)
from nst.widgets import WIDGETS, request_settings


def test_the_further_styles_survive_their_text():
    styles = [FurtherStyle(file="/art/the scream.jpg", weight=2.5, stroke=0.5, region="channel:Sky \u201cblue\u201d"),
              FurtherStyle(layer="Munch", region="inverse"), FurtherStyle(file="/art/a.png")]
    text = further_styles_text(styles)
    assert parse_further_styles(text) == styles
    assert json.loads(text)[2] == {"file": "/art/a.png"}, "defaults are left out of the text"
    assert parse_further_styles("") == parse_further_styles("[]") == []


@pytest.mark.parametrize("text, words", [
    ("{", "not a JSON list"),
    ('{"file": "a.png"}', "JSON list of objects"),
    ('[{"file": "a.png", "layer": "x"}]', "style 2 needs a file or a layer"),
    ('[{}]', "style 2 needs a file or a layer"),
    ('[{"file": "a.png"}, {"file": "b.png", "weight": 11}]', "style 3's weight must be between 0 and 10"),
    ('[{"file": "a.png", "stroke": 0.1}]', "style 2's stroke size must be between 0.25 and 4"),
    ('[{"file": "a.png", "stroke": true}]', "stroke size must be between"),
    ('[{"file": "a.png", "region": "channel:"}]', "unknown region 'channel:'"),
    ('[{"file": "a.png", "colour": "red"}]', "unknown key 'colour'"),
    (json.dumps([{"file": "a.png"}] * MAX_STYLES), f"at most {MAX_STYLES} styles"),
])
def test_a_bad_style_list_is_said_in_one_line(text, words):
    with pytest.raises(StyleListError, match=words):
        parse_further_styles(text)


def test_regions_in_words_and_back():
    for text, label in (("whole", "Whole layer"), ("selection", "Selection"), ("inverse", "Outside the selection"),
                        ("channel:Sky", "Channel \u201cSky\u201d"), ("mask:Houses: front", "Layer mask of \u201cHouses: front\u201d")):
        region = Region.parse(text)
        assert (region.text, region.label) == (text, label)
    assert Region.parse("") == Region("whole")
    with pytest.raises(StyleListError):
        Region.parse("everywhere")


def test_one_style_adds_nothing_to_the_request_and_several_a_weight_and_stroke_each():
    values = {"strength": 2.0, "style-scale": 2.0}
    assert request_settings(values, []) == {"strength": 2.0, "style_scale": 2.0}
    changes = request_settings(values, [FurtherStyle(file="a", weight=0.5, stroke=3.0), FurtherStyle(layer="b")])
    assert changes["style_weights"] == [1.0, 0.5, 1.0] and changes["style_scales"] == [2.0, 3.0, 1.0]
    assert request_settings({}, [FurtherStyle(file="a")])["style_scales"] == [1.0, 1.0], "the engine's default"
    # The further styles' stroke sizes stay within what the dialog's Stroke size offers.
    assert WIDGETS["style_scale"].range == STROKE_RANGE


def test_the_selection_masks_the_new_layer_only_when_no_style_paints_it():
    assert masks_output_with_selection(regions_of("whole", []))
    assert masks_output_with_selection(regions_of("whole", [FurtherStyle(file="a", region="channel:Sky")]))
    assert not masks_output_with_selection(regions_of("whole", [FurtherStyle(file="a", region="selection")]))
    assert not masks_output_with_selection(regions_of("inverse", []))


def test_a_mask_from_gimp_reads_as_an_8_bit_array():
    coverage = bytes(range(256)) * 3
    data = pixels.mask_npy_bytes(coverage, 3, 256)
    array = np.load(io.BytesIO(data))
    assert array.dtype == np.uint8 and array.shape == (3, 256, 1) and array[1, 255, 0] == 255
    with pytest.raises(pixels.PixelError, match="expected 3x255"):
        pixels.mask_npy_bytes(coverage, 3, 255)
