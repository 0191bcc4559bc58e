"""The dialog's palette of recent styles (nst/recent.py): most recent first, each once, at most
RECENT_LIMIT, files that are gone left out; a broken or unwritable file never fails a run."""

import json

from nst.recent import FILE_NAME, RECENT_LIMIT, recent_styles, remember_styles


def test_the_last_styles_come_first_each_once_and_no_more_than_the_limit(tmp_path):
    paintings = []
    for number in range(RECENT_LIMIT + 2):
        paintings.append(tmp_path / f"painting-{number}.png")
        paintings[-1].write_bytes(b"picture")
    profile = tmp_path / "profile"
    assert recent_styles(profile) == []
    for painting in paintings[:3]:
        remember_styles(profile, [str(painting)])
    assert recent_styles(profile) == [str(paintings[2]), str(paintings[1]), str(paintings[0])]
    remember_styles(profile, [str(paintings[0]), str(paintings[4])])  # a run with two styles
    assert recent_styles(profile)[:4] == [str(paintings[0]), str(paintings[4]), str(paintings[2]), str(paintings[1])]
    for painting in paintings:
        remember_styles(profile, [str(painting)])
    assert len(recent_styles(profile)) == RECENT_LIMIT and recent_styles(profile)[0] == str(paintings[-1])
    paintings[-1].unlink()
    assert str(paintings[-1]) not in recent_styles(profile), "a file that is gone is not offered"


def test_a_broken_palette_is_empty_and_an_unwritable_one_fails_nothing(tmp_path):
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / FILE_NAME).write_text("{not json")
    assert recent_styles(profile) == []
    (profile / FILE_NAME).write_text(json.dumps({"a": 1}))
    assert recent_styles(profile) == []
    painting = tmp_path / "p.png"
    painting.write_bytes(b"picture")
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("a file where the profile should be")
    remember_styles(not_a_folder, [str(painting)])  # no exception
    assert recent_styles(not_a_folder) == []
    (profile / FILE_NAME).unlink()
    (profile / FILE_NAME).mkdir()  # the palette's name taken by a folder: the new file cannot replace it
    remember_styles(profile, [str(painting)])
    assert not [path for path in profile.iterdir() if path.name.startswith(".recent-")], "a temporary file was left"
