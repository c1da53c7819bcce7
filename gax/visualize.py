"""Sample grids and scatter plots written as PNG (Pillow only)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Images in [-1, 1] -> uint8 in [0, 255] (values outside are clipped)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, ncols: Optional[int] = None, pad: int = 1) -> np.ndarray:
  """`[N, H, W, C]` images in [-1, 1] -> one uint8 `[rows*(H+pad)+pad, cols*(W+pad)+pad, C]` grid."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  ncols = ncols or int(math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  grid = np.zeros((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.uint8)
  for i, im in enumerate(images):
    r, col = divmod(i, ncols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = im
  return grid


def save_image(path: str, image: np.ndarray, scale: int = 1) -> None:
  """Writes a uint8 `[H, W, C]` image as PNG, enlarged `scale` times (nearest neighbour)."""
  im = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  if scale > 1:
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
  im.save(path)


def save_image_grid(path: str, images: np.ndarray, ncols: Optional[int] = None) -> None:
  """Writes images in [-1, 1] as a PNG grid, enlarged so small images stay visible."""
  grid = image_grid(images, ncols)
  save_image(path, grid, scale=max(1, 256 // max(images.shape[1], 1) // 2))


def save_scatter(path: str, points: np.ndarray, centers: Optional[np.ndarray] = None,
                 size: int = 512, extent: Optional[float] = None) -> None:
  """Writes 2D `points [N, 2]` (and mixture `centers`, as red rings) as a PNG scatter plot."""
  points = np.asarray(points, np.float32)
  ref = points if centers is None else np.concatenate([points, centers])
  extent = extent or float(np.max(np.abs(ref[np.isfinite(ref).all(1)]), initial=1.0)) * 1.15
  im = Image.new("RGB", (size, size), "white")
  draw = ImageDraw.Draw(im)
  to_px = lambda p: ((p[0] / extent + 1) * size / 2, (1 - p[1] / extent) * size / 2)
  for p in points[np.isfinite(points).all(1)]:
    x, y = to_px(p)
    draw.point((x, y), fill=(30, 60, 160))
  for c in [] if centers is None else centers:
    x, y = to_px(c)
    draw.ellipse((x - 6, y - 6, x + 6, y + 6), outline=(200, 30, 30))
  im.save(path)


__all__ = ["to_uint8", "image_grid", "save_image", "save_image_grid", "save_scatter"]
