#!/usr/bin/env python3
"""Two styles in two regions: guided Gram matrices against two whole-layer runs pasted through the mask.

For each pair (a photo of ../shared/images and two paintings) at --size px, the photo is split by a
wavy, slightly soft border (left: the first painting, right: the second) and restyled
(a) once, each painting in its region (guided Grams: stylize_picture(..., regions=...)),
(b) twice, each painting over the whole layer, the two results pasted together through the mask.

(c) per region, the rectangle scored (well inside the region) restyled alone with its painting, at
the same scale; and (d) per region, the whole photo restyled with that region's painting alone, in that
region (guided, one style; the rest keeps the photo's look): the same picture, plan and scales as (a),
without the other region. (c) and (d) are the two readings of the issue's reference, "a single-style
run restyled and scored on that region alone".

Printed per pair and region: the style score against that region's painting and the content score
(../shared/tools/evaluate.py on that rectangle) of (a), (b), (c) and (d), and the ratios (a)/(c) and
(a)/(d); and at the
border, the paste line: the mean gradient magnitude on the border (+-2 px) over its mean 4-16 px to
either side, for the photo itself (the border falls where the photo has its own edges), (a) and (b),
and each one's excess over the photo's: how much of a line the restyling draws there. A side-by-side
picture per pair (photo with the border, (a), (b), and both enlarged at the border) goes to --out.

    .venv/bin/python benchmarks/regions.py [--size 384] [--quality balanced] [--pairs N] [--out DIR]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from results import write_results
from shared_data import fitted, shared_tool

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT.parent / "shared" / "images"
PAIRS = [("tubingen.jpg", "starry_night.jpg", "the_scream.jpg"),
         ("garden.jpg", "woman-with-hat-matisse.jpg", "starry_night.jpg"),
         ("shipwreck.jpg", "the_scream.jpg", "woman-with-hat-matisse.jpg")]
WAVE = 0.06
"""The border's sway, as a share of the width."""
INSIDE = 24
"""Pixels between the border's widest sway and the rectangle a region is scored on."""


def border_x(width: int, height: int) -> np.ndarray:
    """Where the border crosses each row: a wave about the middle."""
    rows = np.arange(height)
    return width / 2 + WAVE * width * np.sin(2 * np.pi * 1.5 * rows / height)


def left_mask(width: int, height: int) -> np.ndarray:
    """float32 (H, W): 1 left of the border, 0 right of it, a pixel of antialiasing between."""
    columns = np.arange(width)[None, :] + 0.5
    return np.clip(border_x(width, height)[:, None] - columns + 0.5, 0, 1).astype(np.float32)


def inside_boxes(width: int, height: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The rectangles (left, top, right, bottom) scored for each region: clear of the border's sway."""
    reach = int(WAVE * width) + INSIDE
    return (0, 0, width // 2 - reach, height), (width // 2 + reach, 0, width, height)


def paste_line(rgb: np.ndarray) -> float:
    """Mean gradient magnitude within 2 px of the border over its mean 4-16 px to either side."""
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    dy, dx = np.gradient(gray)
    magnitude = np.hypot(dx, dy)
    height, width = gray.shape
    distance = np.abs(np.arange(width)[None, :] + 0.5 - border_x(width, height)[:, None])
    on = magnitude[distance <= 2].mean()
    beside = magnitude[(distance >= 4) & (distance <= 16)].mean()
    return float(on / beside)


def restyled(photo: Image.Image, styles: list[Image.Image], settings, regions=None) -> tuple[np.ndarray, float]:
    from stylize_core.engine.api import stylize_picture
    from stylize_core.engine.imageio import Picture, load_picture

    started = time.perf_counter()
    result = stylize_picture(load_picture(photo), [load_picture(style) for style in styles], settings,
                             regions=None if regions is None else [None if r is None else Picture(
                                 np.repeat(r[..., None], 3, axis=2)) for r in regions])
    return result.rgb, time.perf_counter() - started


def scored(evaluator, rgb: np.ndarray, photo: Image.Image, style_path: Path, box, folder: Path, name: str) -> dict:
    crop = folder / f"{name}.png"
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).crop(box).save(crop)
    content = folder / f"{name}-content.png"
    photo.crop(box).save(content)
    return evaluator.evaluate(str(crop), str(content), str(style_path))


def side_by_side(photo: Image.Image, guided: np.ndarray, pasted: np.ndarray, target: Path) -> None:
    width, height = photo.size
    marked = photo.copy()
    draw = ImageDraw.Draw(marked)
    draw.line([(float(x), float(y)) for y, x in enumerate(border_x(width, height))], fill=(255, 255, 255))
    pictures = [marked] + [Image.fromarray(np.round(rgb * 255).astype(np.uint8)) for rgb in (guided, pasted)]
    box = (width // 2 - width // 6, height // 3, width // 2 + width // 6, 2 * height // 3)
    zoomed = [picture.crop(box).resize(((box[2] - box[0]) * 3, (box[3] - box[1]) * 3), Image.NEAREST)
              for picture in pictures[1:]]
    sheet = Image.new("RGB", (3 * width + 20, height + 10 + zoomed[0].height), "white")
    for index, picture in enumerate(pictures):
        sheet.paste(picture, (index * (width + 10), 0))
    for index, picture in enumerate(zoomed):
        sheet.paste(picture, (index * (picture.width + 10), height + 10))
    sheet.save(target)


def run_pair(pair: tuple[str, str, str], args, evaluator, out: Path) -> dict:
    from stylize_core import Settings

    photo_name, *style_names = pair
    photo = fitted(Image.open(IMAGES / photo_name), args.size)
    style_paths = [IMAGES / name for name in style_names]
    styles = [Image.open(path).convert("RGB") for path in style_paths]
    width, height = photo.size
    left = left_mask(width, height)
    settings = Settings(quality=args.quality, max_size=args.size, seed=1)
    guided, guided_s = restyled(photo, styles, settings, [left, None])
    singles = [restyled(photo, [style], settings) for style in styles]
    pasted = singles[0][0] * left[..., None] + singles[1][0] * (1 - left[..., None])
    folder = out / Path(photo_name).stem
    folder.mkdir(parents=True, exist_ok=True)
    side_by_side(photo, guided, pasted, folder / "side-by-side.png")
    figures = {"seconds": {"guided": guided_s, "pasted": singles[0][1] + singles[1][1]}, "regions": []}
    for region, (box, style, style_path, mask) in enumerate(zip(inside_boxes(width, height), styles, style_paths,
                                                                 (left, 1 - left))):
        part = photo.crop(box)
        alone, _ = restyled(part, [style], dataclasses.replace(settings, max_size=max(part.size)))
        canvas = np.zeros_like(guided)
        canvas[box[1]:box[3], box[0]:box[2]] = alone
        in_its_region, _ = restyled(photo, [style], settings, [mask])
        figures["regions"].append({
            mode: {key: value for key, value in scored(evaluator, rgb, photo, style_path, box, folder,
                                                       f"{mode}-{region}").items() if key in ("style_gram", "content")}
            for mode, rgb in (("guided", guided), ("pasted", pasted), ("alone", canvas),
                              ("region_alone", in_its_region))})
    photo_rgb = np.asarray(photo, np.float32) / 255
    figures["paste_line"] = {"photo": paste_line(photo_rgb), "guided": paste_line(guided), "pasted": paste_line(pasted)}
    return figures


def report(name: str, figures: dict) -> None:
    print(f"\n{name}: guided {figures['seconds']['guided']:.0f} s, pasted {figures['seconds']['pasted']:.0f} s")
    print(f"{'region':>7} {'style a':>8} {'b':>6} {'c':>6} {'d':>6} {'a/c':>5} {'a/d':>5} "
          f"{'content a':>9} {'b':>6} {'c':>6} {'d':>6} {'a/c':>5} {'a/d':>5}")
    for index, region in enumerate(figures["regions"]):
        a, b, c, d = region["guided"], region["pasted"], region["alone"], region["region_alone"]
        print(f"{'left' if index == 0 else 'right':>7} " + " ".join(
            f"{a[key]:{8 if key == 'style_gram' else 9}.3f} {b[key]:6.3f} {c[key]:6.3f} {d[key]:6.3f} "
            f"{a[key] / c[key]:5.2f} {a[key] / d[key]:5.2f}" for key in ("style_gram", "content")))
    line = figures["paste_line"]
    excess_a, excess_b = line["guided"] - line["photo"], line["pasted"] - line["photo"]
    print(f"paste line: photo {line['photo']:.2f}, (a) guided {line['guided']:.2f}, (b) pasted {line['pasted']:.2f}; "
          f"excess over the photo's: (a) {excess_a:+.2f}, (b) {excess_b:+.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--quality", default="balanced")
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "stylize-regions"))
    parser.add_argument("--json")
    args = parser.parse_args()
    evaluator = shared_tool("evaluate").Evaluator()
    out = Path(args.out)
    figures = {}
    for pair in PAIRS[:args.pairs]:
        figures[pair[0]] = run_pair(pair, args, evaluator, out)
        report(pair[0], figures[pair[0]])
    print(f"\nside-by-side pictures: {out}/<photo>/side-by-side.png")
    write_results(args.json, figures)


if __name__ == "__main__":
    main()
