"""Pictures side by side with a label above each, for looking at a benchmark's results."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

GAP = 8
LABEL_HEIGHT = 22


def side_by_side(tiles: list[Image.Image], labels: list[str], target: Path) -> None:
    width, height = tiles[0].size
    sheet = Image.new("RGB", (len(tiles) * (width + GAP) - GAP, height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (tile, label) in enumerate(zip(tiles, labels)):
        sheet.paste(tile, (index * (width + GAP), LABEL_HEIGHT))
        draw.text((index * (width + GAP) + 4, 5), label, fill="black")
    sheet.save(target)
