"""Clips in and out, a frame at a time: video files (PyAV, FFmpeg's libraries), animated GIF and WebP
(Pillow), and folders or globs of pictures.

A clip is read as a stream of Pictures with its frame timing (a frame rate, or each frame's duration);
it is written from a stream of frames once they are all done (clipjob.py keeps them until then), with
the same timing and, from a video, its audio copied packet by packet (not re-encoded).
"""

from __future__ import annotations

import contextlib
import glob
import io
import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import av
import numpy as np
from PIL import Image, ImageSequence

from ..contract.errors import InputError
from .imageio import Picture, load_picture

VIDEO_SUFFIXES = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                  ".webm": "libvpx-vp9", ".avi": "mpeg4"}
"""The video files written, by suffix, and their encoder; any file FFmpeg reads is read."""
CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                     ".avi": "avi"}
READ_VIDEO_SUFFIXES = set(VIDEO_SUFFIXES) | {".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".ts", ".3gp"}
ANIMATION_SUFFIXES = (".gif", ".webp")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")
FOLDER_FRAME_RATE = Fraction(25)
"""The frame rate given to a folder or glob of pictures (they carry none)."""
VIDEO_QUALITY = {"libx264": {"crf": "16", "preset": "medium"}, "libvpx-vp9": {"crf": "24", "b": "0"}}


@dataclass
class Clip:
    """A clip to read: where from, how many frames, and their timing."""
    source: str
    kind: str
    """"video", "animation" or "pictures"."""
    count: int
    rate: Fraction = FOLDER_FRAME_RATE
    """Frames per second (video, pictures)."""
    durations_ms: list[int] = field(default_factory=list)
    """Each frame's duration (animation)."""
    paths: list[Path] = field(default_factory=list)
    """The pictures, in order (pictures)."""
    has_audio: bool = False

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[Picture]:
        """Frames start..stop-1 (0-based), decoded one at a time."""
        stop = self.count if stop is None else min(stop, self.count)
        if self.kind == "pictures":
            for path in self.paths[start:stop]:
                yield load_picture(path, "frame")
            return
        for number, rgb in enumerate(self._decoded()):
            if number >= stop:
                return
            if number >= start:
                yield load_picture(rgb, "frame")

    def _decoded(self) -> Iterator[np.ndarray]:
        if self.kind == "animation":
            with Image.open(self.source) as image:
                for frame in ImageSequence.Iterator(image):
                    yield np.asarray(frame.convert("RGBA" if _has_alpha(frame) else "RGB"))
            return
        try:
            with av.open(self.source) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as error:
            raise InputError(f"cannot read {self.source}: {error}") from error

    def durations(self, start: int, stop: int) -> list[int]:
        """Frames start..stop-1's durations in milliseconds."""
        if self.durations_ms:
            return self.durations_ms[start:stop]
        return [round(1000 / self.rate)] * (stop - start)


def _has_alpha(frame: Image.Image) -> bool:
    return frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info


def _duration(frame: Image.Image) -> int:
    """A frame's duration in ms (WebP says it once the frame is loaded); 100 where none is given."""
    frame.load()
    return frame.info.get("duration") or 100


def is_clip(source: str) -> bool:
    """A folder, a glob, an animated GIF/WebP, or a file FFmpeg reads that is not a picture: what the CLI
    restyles as a clip."""
    path = Path(source)
    if path.is_dir() or glob.has_magic(source):
        return True
    suffix = path.suffix.lower()
    if not path.is_file() or suffix == ".npy":
        return False
    if suffix in PICTURE_SUFFIXES:
        if suffix not in ANIMATION_SUFFIXES:
            return False
        try:
            with Image.open(path) as image:
                return getattr(image, "n_frames", 1) > 1
        except OSError:
            return False
    if suffix in READ_VIDEO_SUFFIXES:
        return True
    try:  # any other file: a clip where FFmpeg finds streams in it
        with av.open(source) as container:
            return bool(container.streams)
    except (av.FFmpegError, ValueError, OSError):
        return False


def open_clip(source: str) -> Clip:
    """The clip at `source`, its frames counted and timed (nothing decoded yet but what that needs)."""
    path = Path(source)
    if path.is_dir() or glob.has_magic(source):
        paths = sorted(path.iterdir()) if path.is_dir() else sorted(Path(p) for p in glob.glob(source))
        paths = [p for p in paths if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES]
        if not paths:
            raise InputError(f"no pictures in {source} ({', '.join(PICTURE_SUFFIXES)})")
        return Clip(source, "pictures", len(paths), paths=paths)
    if not path.is_file():
        raise InputError(f"{source}: no such file")
    if path.suffix.lower() in ANIMATION_SUFFIXES:
        try:
            with Image.open(path) as image:
                durations = [_duration(frame) for frame in ImageSequence.Iterator(image)]
        except OSError as error:
            raise InputError(f"cannot read {source}: {error}") from error
        return Clip(source, "animation", len(durations), durations_ms=durations)
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise InputError(f"{source} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or FOLDER_FRAME_RATE
            count = stream.frames or sum(1 for _ in container.decode(video=0))
            has_audio = bool(container.streams.audio)
    except av.FFmpegError as error:
        raise InputError(f"cannot read {source}: {error}") from error
    if count == 0:
        raise InputError(f"{source} has no frames")
    return Clip(source, "video", count, rate=Fraction(rate), has_audio=has_audio)


def output_kind(output: str) -> str:
    """"video", "animation" or "pictures" (a folder: a name without a picture or video suffix)."""
    suffix = Path(output).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in ANIMATION_SUFFIXES:
        return "animation"
    if suffix in PICTURE_SUFFIXES or suffix in READ_VIDEO_SUFFIXES or suffix == ".npy":
        raise InputError(f"a clip is written as a video ({', '.join(VIDEO_SUFFIXES)}), an animated GIF or "
                         f"WebP, or a folder of PNG frames; not {suffix}")
    return "pictures"


def audio_problem(clip: Clip, suffix: str) -> str | None:
    """Why the clip's audio cannot be copied into a `suffix` file as it is (None: it can, or has none)."""
    if clip.kind != "video" or not clip.has_audio:
        return None
    with av.open(clip.source) as source, av.open(io.BytesIO(), "w", format=CONTAINER_FORMATS[suffix]) as probe:
        audio = source.streams.audio[0]
        try:
            probe.add_stream_from_template(audio)
        except ValueError:
            return (f"the clip's sound ({audio.codec_context.name}) cannot go into a {suffix} file as it is: "
                    f"write a .mkv (it takes any sound) or {', '.join(s for s in VIDEO_SUFFIXES if s not in (suffix, '.mkv'))}")
    return None


def write_video(stream: BinaryIO, suffix: str, frames: Iterable[np.ndarray], rate: Fraction, clip: Clip | None,
                span: tuple[int, int]) -> None:
    """Encode frames (uint8 (H, W, 3)) at `rate` as a `suffix` file; the clip's audio for the frames of
    `span` is copied alongside, packet by packet, each before the first frame after it."""
    codec = VIDEO_SUFFIXES[suffix]
    frames = iter(frames)
    first = next(frames)
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(av.open(stream, "w", format=CONTAINER_FORMATS[suffix]))
        video = output.add_stream(codec, rate=rate, options=VIDEO_QUALITY.get(codec, {}))
        # 4:2:0 needs even sides: the last row or column is dropped, as FFmpeg's scale would.
        video.width, video.height, video.pix_fmt = first.shape[1] // 2 * 2, first.shape[0] // 2 * 2, "yuv420p"
        audio = iter(())
        if clip is not None and clip.kind == "video" and clip.has_audio:
            source = stack.enter_context(av.open(clip.source))
            whole = span[0] == 0 and span[1] >= clip.count
            # The whole clip's audio as it is (an encoder's priming packets start before 0, and the
            # sound may outlast the last frame); a part's: what plays during its frames.
            audio = audio_packets(source, output, Fraction(0) if whole else span[0] / clip.rate,
                                  None if whole else span[1] / clip.rate)
        waiting = next(audio, None)  # (seconds, packet): all streams are added before the first mux
        for number, rgb in enumerate(itertools.chain([first], frames)):
            while waiting is not None and waiting[0] <= number / rate:
                output.mux(waiting[1])
                waiting = next(audio, None)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:video.height, :video.width]),
                                               format="rgb24")
            frame.pts, frame.time_base = number, 1 / rate  # one tick a frame: the rate exactly
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        while waiting is not None:
            output.mux(waiting[1])
            waiting = next(audio, None)


def audio_packets(source, output, begin: Fraction, end: Fraction | None) -> Iterator[tuple[Fraction, av.Packet]]:
    """The source's first audio stream added to `output` as it is (not re-encoded), and its packets from
    `begin` to `end` (seconds; None: all of them) timed from `begin`, with their time from the output's
    start."""
    audio = source.streams.audio[0]
    copied = output.add_stream_from_template(audio)
    shift = int(begin / audio.time_base)
    for packet in source.demux(audio):
        if packet.dts is None or packet.pts is None:
            continue  # the demuxer's flush packet
        when = packet.pts * audio.time_base
        if end is not None and not begin <= when < end:
            continue
        packet.pts -= shift
        packet.dts -= shift
        packet.stream = copied
        yield when - begin, packet


def write_animation(stream: BinaryIO, suffix: str, frames: Iterable[np.ndarray], durations_ms: list[int]) -> None:
    """An animated GIF or WebP (looping), each frame for its duration."""
    pictures = (Image.fromarray(rgb) for rgb in frames)
    first = next(pictures)
    options = {"lossless": False, "quality": 90} if suffix == ".webp" else {"optimize": False}
    first.save(stream, format=suffix.lstrip(".").upper(), save_all=True, append_images=pictures,
               duration=durations_ms, loop=0, **options)
