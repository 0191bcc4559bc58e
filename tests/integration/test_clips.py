"""Clips through the CLI as a user runs it: a folder, a video (with its audio) or an animated GIF in, the
same kind out with the same frames and timing; interrupted and run again, it continues; bad inputs get
one line and leave nothing behind. And the engine's point: the temporal mode holds still where frames
restyled on their own flicker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from helpers import CONTENT, STYLE
from stylize_core import Settings
from stylize_core.engine.frames import stylize_frames
from stylize_core.engine.imageio import Picture
from stylize_core.engine.motion import motion_between, warp

QUICK = ["--quality", "fast", "--max-size", "64", "--progress", "json"]
PHOTO = Image.open(CONTENT).convert("RGB")


def pan(count: int, size=(64, 48)) -> list[np.ndarray]:
    """A camera panning right over the photo, 1 % of its width a frame (uint8 RGB)."""
    width, height = PHOTO.size
    frames = []
    for t in range(count):
        left = width * (0.1 + 0.01 * t)
        box = (left, height * 0.2, left + width * 0.6, height * 0.2 + width * 0.45)
        frames.append(np.asarray(PHOTO.resize(size, Image.LANCZOS, box=box)))
    return frames


def frame_folder(folder: Path, count: int) -> Path:
    folder.mkdir()
    for number, frame in enumerate(pan(count)):
        Image.fromarray(frame).save(folder / f"shot_{number:03d}.png")
    return folder


def write_clip(path: Path, count: int, rate: int = 12, audio: bool = False) -> Path:
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("aac", rate=8000) if audio else None
        for frame in pan(count):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            seconds = count / rate
            samples = (np.sin(np.arange(int(8000 * seconds)) * 0.2) * 0.3).astype(np.float32)[None]
            chunk = sound.codec_context.frame_size or 1024
            for start in range(0, samples.shape[1], chunk):
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + chunk]),
                                                   format="flt", layout="mono")
                piece.sample_rate, piece.pts = 8000, start
                container.mux(sound.encode(piece))
            container.mux(sound.encode(None))
    return path


def stylize(*args, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylize_core", *map(str, args)], capture_output=True,
                          text=True, **options)


def events(process) -> list[dict]:
    return [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]


def video_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rate, size = Fraction(video.guessed_rate), (video.width, video.height)
        frames = [frame.time for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = [bytes(p) for p in container.demux(audio=0) if p.size] if container.streams.audio else []
        return {"frames": len(frames), "rate": rate, "pts": frames, "size": size, "audio": audio}


def leftovers(folder: Path, *expected: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


def test_a_folder_of_frames_becomes_a_video_of_the_same_frames(tmp_path):
    frames = frame_folder(tmp_path / "shots", 5)
    result = stylize(frames, STYLE, "-o", tmp_path / "out.mp4", *QUICK)
    assert result.returncode == 0, result.stderr
    facts = video_facts(tmp_path / "out.mp4")
    assert (facts["frames"], facts["rate"], facts["size"]) == (5, 25, (64, 48))
    kinds = [event["stage"] for event in events(result)]
    assert kinds.count("frame") == 5 and kinds[-1] == "done"
    assert [e["frame"] for e in events(result) if e["stage"] == "frame"] == [1, 2, 3, 4, 5]
    assert leftovers(tmp_path, "shots", "out.mp4") == []


@pytest.mark.slow
def test_a_video_keeps_its_rate_its_audio_and_part_of_it_can_be_restyled(tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 12, rate=12, audio=True)
    result = stylize(source, STYLE, "-o", tmp_path / "out.mkv", *QUICK)
    assert result.returncode == 0, result.stderr
    before, after = video_facts(source), video_facts(tmp_path / "out.mkv")
    assert (after["frames"], after["rate"]) == (12, 12)
    assert after["audio"] == before["audio"] and len(before["audio"]) > 5  # copied, not re-encoded
    part = stylize(source, STYLE, "-o", tmp_path / "part.mp4", "--frames", "4:8", *QUICK)
    assert part.returncode == 0, part.stderr
    assert video_facts(tmp_path / "part.mp4")["frames"] == 4
    assert [e["frames"] for e in events(part) if e["stage"] == "frame"] == [4] * 4


@pytest.mark.slow
def test_an_animated_gif_keeps_its_timing_and_a_folder_comes_out_as_frames(tmp_path):
    pictures = [Image.fromarray(frame) for frame in pan(4)]
    pictures[0].save(tmp_path / "walk.gif", save_all=True, append_images=pictures[1:],
                     duration=[80, 120, 80, 200], loop=0)
    result = stylize(tmp_path / "walk.gif", STYLE, "-o", tmp_path / "out.webp", *QUICK)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out.webp") as out:
        assert out.n_frames == 4
        durations = []
        for number in range(out.n_frames):
            out.seek(number)
            out.load()  # WebP tells a frame's duration once it is loaded
            durations.append(out.info["duration"])
    assert durations == [80, 120, 80, 200]
    folder = stylize(tmp_path / "walk.gif", STYLE, "-o", tmp_path / "frames", *QUICK)
    assert folder.returncode == 0, folder.stderr
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{n:06d}.png" for n in range(4)]


@pytest.mark.slow
def test_an_interrupted_clip_continues_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path):
    """Stopped (SIGINT, as Ctrl+C) once two frames are written, then run again: the second run restyles
    only the frames left, and the output has the frames and timing of a run never stopped."""
    source = write_clip(tmp_path / "clip.mp4", 8, rate=10)
    output = tmp_path / "out.mp4"
    process = subprocess.Popen([sys.executable, "-m", "stylize_core", source, STYLE, "-o", output, *QUICK],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        event = json.loads(line)
        if event["stage"] == "frame" and event["frame"] == 2:
            process.send_signal(signal.SIGINT)
            break
    process.communicate(timeout=120)
    assert process.returncode == 130
    work = tmp_path / ".out.mp4.frames"
    done = sorted(p.name for p in work.glob("frame_*.png"))
    assert len(done) >= 2 and not output.exists()
    again = stylize(source, STYLE, "-o", output, *QUICK)
    assert again.returncode == 0, again.stderr
    frames = [e for e in events(again) if e["stage"] == "frame"]
    assert [e["frames"] for e in frames] == [8 - len(done)] * (8 - len(done))  # none restyled twice
    whole = stylize(source, STYLE, "-o", tmp_path / "whole.mp4", *QUICK)
    assert whole.returncode == 0, whole.stderr
    resumed, uninterrupted = video_facts(output), video_facts(tmp_path / "whole.mp4")
    assert (resumed["frames"], resumed["rate"], resumed["pts"]) == (
        uninterrupted["frames"], uninterrupted["rate"], uninterrupted["pts"])
    assert leftovers(tmp_path, "clip.mp4", "out.mp4", "whole.mp4") == []


@pytest.mark.slow
@pytest.mark.parametrize("case", ["corrupt", "no video", "sizes differ", "output is input", "frames outside",
                                  "output folder not empty"])
def test_a_bad_clip_gets_one_line_and_nothing_is_written(tmp_path, case):
    output = tmp_path / "out.mp4"
    if case == "corrupt":
        source = write_clip(tmp_path / "clip.mp4", 6)
        source.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
        expected = "clip.mp4"
    elif case == "no video":
        source = tmp_path / "sound.mka"
        with av.open(str(source), "w") as container:
            sound = container.add_stream("libopus", rate=48000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48000, 0
            container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
        expected = "no video stream"
    elif case == "sizes differ":
        source = frame_folder(tmp_path / "shots", 3)
        Image.open(source / "shot_002.png").resize((80, 48)).save(source / "shot_002.png")
        expected = "differ in size"
    elif case == "output is input":
        source = write_clip(tmp_path / "clip.mp4", 3)
        output = source
        expected = "overwrite the input"
    elif case == "frames outside":
        source = write_clip(tmp_path / "clip.mp4", 3)
        expected = "holds no frame"
    else:
        source = frame_folder(tmp_path / "shots", 3)
        output = tmp_path / "taken"
        output.mkdir()
        (output / "mine.txt").write_text("keep me")
        expected = "not empty"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    extra = ["--frames", "5:9"] if case == "frames outside" else []
    result = stylize(source, STYLE, "-o", output, *QUICK, *extra)
    assert result.returncode != 0
    error = [e for e in events(result) if e["stage"] == "error"]
    assert len(error) == 1 and expected in error[0]["message"] and "\n" not in error[0]["message"]
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    if case == "sizes differ":  # found at the second frame: the first one's work stays for a rerun
        after = {p: data for p, data in after.items() if ".out.mp4.frames" not in p.parts}
    assert after == before


def test_one_frame_is_a_clip_of_one_frame(tmp_path):
    frames = frame_folder(tmp_path / "shots", 1)
    result = stylize(frames, STYLE, "-o", tmp_path / "one.gif", *QUICK)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "one.gif") as out:
        assert getattr(out, "n_frames", 1) == 1 and out.size == (64, 48)


def flicker(frames: list[np.ndarray], results: list[Picture]) -> float:
    """The mean squared change between consecutive results where the input's motion is reliable."""
    errors = []
    for t in range(1, len(frames)):
        motion = motion_between(frames[t - 1].astype(np.float32) / 255, frames[t].astype(np.float32) / 255)
        change = (warp(results[t - 1].rgb, motion.backward) - results[t].rgb) ** 2
        errors.append(change.sum(-1)[motion.reliable > 0].mean())
    return float(np.mean(errors))


@pytest.mark.slow
def test_the_temporal_mode_holds_the_strokes_still():
    """Frames restyled on their own each land on their own strokes; as a clip, the results follow the
    motion: several times less change where the motion is reliable."""
    from stylize_core.engine.api import stylize_picture
    frames = pan(5, (96, 72))
    style = Picture(np.asarray(Image.open(STYLE).convert("RGB").resize((96, 72)), np.float32) / 255)
    settings = Settings(quality="fast", max_size=96)
    pictures = [Picture(frame.astype(np.float32) / 255) for frame in frames]
    alone = [stylize_picture(picture, [style], settings) for picture in pictures]
    clip = list(stylize_frames(iter(pictures), [style], settings, count=len(frames)))
    assert flicker(frames, clip) < 0.3 * flicker(frames, alone)


def npy(frame: np.ndarray) -> bytes:
    import io
    stream = io.BytesIO()
    np.save(stream, frame.astype(np.float32) / 255)
    return stream.getvalue()


@pytest.mark.usefixtures("private_state")
def test_a_clip_on_the_server_is_one_queued_run_whose_frames_come_back_as_done(served):
    """The plug-in's route: the frames and the style in one request; the events tell the frames, and
    each restyled frame comes back numbered."""
    from stylize_core.contract.client import run_on_server
    frames = pan(3)
    events = []
    settings = {"quality": "fast", "max_size": 64}
    code, results = run_on_server(served.address, [npy(f) for f in frames] + [npy(pan(1, (48, 48))[0])], settings,
                                  events.append, frames=3)
    assert code == 0 and len(results) == 3
    shapes = [np.load(__import__("io").BytesIO(data)).shape for data in results]
    assert shapes == [(48, 64, 3)] * 3
    assert [e["frame"] for e in events if e["stage"] == "frame"] == [1, 2, 3]
    assert {e.get("frames") for e in events if e["stage"] == "optimize"} == {3}
    assert served.ping()["runs"] == 1
    refused = []
    with pytest.raises(Exception, match="frames must be a count"):
        run_on_server(served.address, [npy(frames[0]), npy(frames[1])], settings, refused.append, frames=0)


@pytest.mark.slow
@pytest.mark.parametrize("changes", [
    {"preserve_colors": "luminance"}, {"preserve_colors": "histogram", "style_scale": 2.0},
    {"resolution": "full", "max_size": 64}, {"tile_size": 128, "max_size": 160},
    {"resolution": "preview"}, {"strength": 3.0, "style_weights": [1.0, 2.0]}],
    ids=["luminance", "histogram-strokes", "full", "tiles", "preview", "two-styles"])
def test_every_option_works_on_a_clip(changes):
    """Each option the still takes, on a clip of three frames: the frames come back at the output's size,
    restyled, and following the motion (less change than frames restyled on their own would have)."""
    frames = pan(3, (160, 120))
    styles = [Picture(np.asarray(Image.open(path).convert("RGB").resize((96, 72)), np.float32) / 255)
              for path in (STYLE, CONTENT)][:2 if "style_weights" in changes else 1]
    settings = Settings(**{"quality": "fast", "max_size": 96, **changes})
    pictures = [Picture(frame.astype(np.float32) / 255) for frame in frames]
    results = list(stylize_frames(iter(pictures), styles, settings, count=3))
    expected = (120, 160, 3) if settings.resolution != "preview" else results[0].rgb.shape
    assert [r.rgb.shape for r in results] == [expected] * 3
    assert all(np.abs(r.rgb - np.asarray(Image.fromarray(f).resize(r.size), np.float32) / 255).mean() > 0.03
               for r, f in zip(results, frames))
    if changes.get("preserve_colors") == "luminance":
        from stylize_core.engine.color import keep_content_chrominance
        assert np.allclose(keep_content_chrominance(results[1].rgb, pictures[1].rgb), results[1].rgb, atol=0.02)
