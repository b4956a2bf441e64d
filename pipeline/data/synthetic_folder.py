"""A seeded JPEG folder in the ILSVRC layout, for tests and the streamed-data benchmark.

``make_ilsvrc_folder(root, classes, train_images, val_images, size, seed, messy)`` writes
``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``. Each class has its own colour and
stripe orientation, an image is that pattern, randomly shifted, with noise, so classes are
learnable. With ``messy`` the first four training classes (cycling when there are fewer) get one
file each of what real folders hold: a CMYK JPEG, a grayscale JPEG, a PNG saved under a ``.JPEG``
name, and a truncated JPEG (the first half of its bytes), which must be skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class GeneratedFolder:
    """What was written: the root, the class ids, and the messy files (kind -> path)."""

    root: Path
    wnids: list[str]
    train_images: int
    val_images: int
    messy: dict[str, Path] = field(default_factory=dict)


def _pattern(label: int, classes: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    width, height = size
    hue = np.array([np.cos(2 * np.pi * label / classes), np.cos(2 * np.pi * (label / classes + 1 / 3)),
                    np.cos(2 * np.pi * (label / classes + 2 / 3))]) * 0.35 + 0.5
    angle = np.pi * label / classes
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    shift = rng.uniform(0, 2 * np.pi)
    stripes = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * (2 * np.pi / max(8.0, width / 4)) + shift)
    image = hue[None, None, :] * (0.75 + 0.25 * stripes[..., None])
    image = image + rng.normal(0.0, 0.06, image.shape)
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def make_ilsvrc_folder(root: str | Path, classes: int = 3, train_images: int = 60, val_images: int = 12,
                       size: tuple[int, int] = (48, 40), seed: int = 0, messy: bool = True,
                       quality: int = 90) -> GeneratedFolder:
    """Write the folder (see the module docstring); images are spread evenly over classes."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    wnids = [f"n{index:08d}" for index in range(classes)]
    for split in ("train", "val"):
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train_images), ("val", val_images)):
        for index in range(count):
            label = index % classes
            path = root / split / wnids[label] / f"{wnids[label]}_{split}_{index:06d}.JPEG"
            Image.fromarray(_pattern(label, classes, size, rng)).save(path, "JPEG", quality=quality)
    generated = GeneratedFolder(root, wnids, train_images, val_images)
    if messy:
        generated.messy = _messy_files(root, wnids, classes, size, rng)
    return generated


def _messy_files(root: Path, wnids: list[str], classes: int, size: tuple[int, int],
                 rng: np.random.Generator) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for slot, kind in enumerate(("cmyk", "gray", "png", "truncated")):
        label = slot % classes
        path = root / "train" / wnids[label] / f"{wnids[label]}_{kind}.JPEG"
        image = Image.fromarray(_pattern(label, classes, size, rng))
        if kind == "cmyk":
            image.convert("CMYK").save(path, "JPEG", quality=90)
        elif kind == "gray":
            image.convert("L").save(path, "JPEG", quality=90)
        elif kind == "png":
            image.save(path, "PNG")
        else:
            image.save(path, "JPEG", quality=90)
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        files[kind] = path
    return files
