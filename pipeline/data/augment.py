"""Batched tensor augmentation that runs on whatever device the images are on.

- ``normalize``: uint8 images -> float, scaled to [0, 1] then standardised per channel.
- ``random_resized_crop_flip``: a per-sample random crop (area share in ``scale``, aspect ratio in
  ``ratio``) resized to ``out_size``, mirrored with probability 1/2. The crop boxes become affine
  matrices and one ``affine_grid`` + ``grid_sample`` call resamples the whole batch, so it works on
  CPU and GPU alike. Random numbers come only from the ``generator`` passed in (drawn on the
  generator's device, then moved), so the same generator state gives the same batch.
- ``resize``: bilinear (anti-aliased) resize for evaluation at a given resolution;
  ``eval_transform`` adds ImageNet's resize-then-centre-crop when given a crop fraction below 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def normalize(images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(images / 255 - mean) / std`` per channel, as float32 on the images' device."""
    images = images_uint8.to(torch.float32) / 255.0
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def random_resized_crop_flip(
    images_float: torch.Tensor,
    out_size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    flip: bool = True,
) -> torch.Tensor:
    """Random resized crop and horizontal flip of a float batch N x C x H x W -> N x C x out x out.

    Crop widths and heights are fractions of the image side; a crop that would exceed the image
    in one dimension is clipped to the full side. Sampling is bilinear with border padding.
    """
    if images_float.dim() != 4:
        raise ValueError(f"expected a batch N x C x H x W, got shape {tuple(images_float.shape)}")
    if not images_float.is_floating_point():
        raise ValueError("random_resized_crop_flip expects float images; call normalize first")
    count = images_float.shape[0]
    draws = torch.rand(count, 5, generator=generator, device=generator.device).to(images_float.device)
    area = scale[0] + (scale[1] - scale[0]) * draws[:, 0]
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * draws[:, 1])
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    # Crop centres in normalised coordinates [-1, 1], keeping the box inside the image.
    centre_x = (1.0 - width) * (2.0 * draws[:, 2] - 1.0)
    centre_y = (1.0 - height) * (2.0 * draws[:, 3] - 1.0)
    mirror = torch.where(draws[:, 4] < 0.5, -1.0, 1.0) if flip else torch.ones_like(width)
    theta = torch.zeros(count, 2, 3, dtype=images_float.dtype, device=images_float.device)
    theta[:, 0, 0] = width * mirror
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [count, images_float.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(images_float, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch to size x size (bilinear, anti-aliased); uint8 in gives uint8 out."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.dtype == torch.uint8:
        resized = F.interpolate(images.to(torch.float32), size=(size, size), mode="bilinear",
                                align_corners=False, antialias=True)
        return resized.round().clamp(0, 255).to(torch.uint8)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def train_transform(
    images_uint8: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    out_size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
) -> torch.Tensor:
    """The training pipeline in one call: normalise, then random resized crop + flip to ``out_size``."""
    return random_resized_crop_flip(normalize(images_uint8, mean, std), out_size, generator, scale=scale)


def eval_transform(
    images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float], out_size: int, crop: float = 1.0
) -> torch.Tensor:
    """The evaluation pipeline: normalise, then resize the whole image to ``out_size``.

    With ``crop`` < 1 (ImageNet's 0.875, OFA's rule) it resizes to ``ceil(out_size / crop)`` and
    takes the centre ``out_size`` square instead; 1.0 is every other data set's whole image."""
    if crop >= 1.0:
        return resize(normalize(images_uint8, mean, std), out_size)
    side = int(math.ceil(out_size / crop))
    resized = resize(normalize(images_uint8, mean, std), side)
    offset = (side - out_size) // 2
    return resized[:, :, offset:offset + out_size, offset:offset + out_size]
