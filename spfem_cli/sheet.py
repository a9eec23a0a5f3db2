"""Contact sheets: grids of frames with labels, written as PNG for people to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw

LABEL_H = 22


def _fit(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))


def contact_sheet(
    rows: Sequence[Sequence[np.ndarray]],
    *,
    column_labels: Sequence[str],
    row_labels: Sequence[str] | None = None,
    cell_height: int = 256,
) -> np.ndarray:
    """Lay frames out in a labelled grid.

    rows: R rows of C frames, each (H, W, 3) uint8 RGB (resized to cell_height pixels high);
    column_labels: C labels drawn above the columns; row_labels: R labels drawn on each row's
    first cell. Returns (H', W', 3) uint8.
    """
    cells = [[_fit(f, cell_height) for f in row] for row in rows]
    col_w = [max(row[c].shape[1] for row in cells) for c in range(len(column_labels))]
    sheet = Image.new("RGB", (sum(col_w), LABEL_H + cell_height * len(cells)), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for c, label in enumerate(column_labels):
        draw.text((x + 4, 4), label, fill="black")
        for r, row in enumerate(cells):
            sheet.paste(Image.fromarray(row[c]), (x, LABEL_H + r * cell_height))
        x += col_w[c]
    if row_labels:
        for r, label in enumerate(row_labels):
            y = LABEL_H + r * cell_height
            draw.rectangle((0, y, 8 + 7 * len(label), y + 16), fill="black")
            draw.text((4, y + 2), label, fill="white")
    return np.asarray(sheet)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    iio.imwrite(path, image)
    return path
