"""INT8 and fp16 hardware profiles: the calibration images, the model a profile times, and the
top-1 of the subnet as the profile deploys it.

A profile with ``precision: int8`` deploys the subnet as ONNX Runtime's static QDQ INT8 model
(``pipeline.quantize.quantize_int8``, the project's one quantisation path). Its activation ranges
are calibrated on ``profile.calibration_images`` training images drawn with
``evaluate.calibration_seed`` (``pipeline.data.calibration_subset``: the same seed gives the same
images, and a smaller count is a prefix of a larger one), at the architecture's resolution, with
the evaluation transform and the data set's normalisation (``CalibrationImages``).

- ``build_deployed_model``: the one rule for the model a profile deploys: int8 quantised and
  checked (``check_int8_model``: it loads, has QuantizeLinear / DequantizeLinear nodes, runs and
  gives finite outputs of the right shape), fp16 converted to float16 weights and operators
  (``pipeline.quantize.convert_fp16``); written atomically, never a bad file.
- ``latency_model``: what the latency actor times. The fp32 file it already exports (random
  weights: latency does not depend on weight values) built into the deployed model, cached in the
  shared ONNX cache and reused when present.
- ``deployed_top1``: what the accuracy actor reports as ``top1@<profile>``. The BN-recalibrated
  extracted subnet exported with a free batch axis, quantised on the same images (int8) and checked,
  or converted (fp16), cached
  under a key of the checkpoint, adaptation round and calibration settings (so a retried
  candidate is not quantised again), and run with ONNX Runtime's CPU provider on the validation
  images; percent, like ``top1``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.config import DataConfig
from pipeline.errors import ProfileError
from pipeline.quantize import convert_fp16, onnx_predictions, quantize_int8, top1

#: the ONNX operators a QDQ model must contain
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class CalibrationImages:
    """The seeded training images (uint8, in draw order) INT8 calibration takes a prefix of."""

    images: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: float = 1.0  # the data set's evaluation crop (``Splits.eval_crop``)

    @classmethod
    def load(cls, data: DataConfig, seed: int, count: int, calibration_seed: int) -> CalibrationImages:
        """Load the data set and keep only the first ``count`` seeded training images."""
        from pipeline.data import calibration_subset, load_splits_from_config

        splits = load_splits_from_config(data, seed=seed)
        return cls(calibration_subset(splits, count, calibration_seed), tuple(splits.mean), tuple(splits.std),
                   splits.eval_crop)

    def at(self, resolution: int, count: int) -> np.ndarray:
        """The first ``count`` images at ``resolution``, normalised: float32 N x 3 x R x R."""
        from pipeline.data.augment import eval_transform

        if count > len(self.images):
            raise ProfileError(f"INT8 calibration wants {count} images but {len(self.images)} were loaded")
        return eval_transform(self.images[:count], self.mean, self.std, resolution, self.crop).numpy().astype(np.float32)


def check_int8_model(path: str | Path, resolution: int, batch: int, num_classes: int) -> None:
    """``ProfileError`` unless ``path`` loads, is QDQ and gives finite ``batch x num_classes`` logits."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises several decode errors
        raise ProfileError(f"INT8 model {path.name} does not load: {exc}") from None
    ops = {node.op_type for node in model.graph.node}
    if not QDQ_OPS <= ops:
        raise ProfileError(f"INT8 model {path.name} has no QuantizeLinear/DequantizeLinear nodes")
    from pipeline.onnx_runtime import ort_session

    session = ort_session(path, "cpu", 1)
    feed = np.random.default_rng(0).standard_normal((batch, 3, resolution, resolution)).astype(np.float32)
    logits = np.asarray(session.run(None, {session.get_inputs()[0].name: feed})[-1])
    if logits.shape != (batch, num_classes) or not np.isfinite(logits).all():
        raise ProfileError(f"INT8 model {path.name} gives logits of shape {logits.shape} (want {(batch, num_classes)})"
                           f"{'' if np.isfinite(logits).all() else ' with non-finite values'}")


def _quantize_checked(fp32_path: Path, int8_path: Path, calibration: np.ndarray, resolution: int,
                      check_batch: int, num_classes: int) -> Path:
    """Quantise into a scratch file, check it, then move it to ``int8_path`` (never a bad cache entry)."""
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as scratch:
        candidate = quantize_int8(fp32_path, Path(scratch) / "int8.onnx", calibration)
        check_int8_model(candidate, resolution, check_batch, num_classes)
        os.replace(candidate, int8_path)
    return int8_path


def build_deployed_model(fp32_path: Path, model_path: Path, precision: str, calibration: Callable[[], np.ndarray],
                         resolution: int, check_batch: int, num_classes: int) -> Path:
    """``fp32_path`` as a ``precision`` profile deploys it, written to ``model_path``: int8 quantised
    on ``calibration()`` (called only for int8) and checked; fp16 converted."""
    if precision == "int8":
        return _quantize_checked(fp32_path, model_path, calibration(), resolution, check_batch, num_classes)
    if precision == "fp16":
        return convert_fp16(fp32_path, model_path)
    raise ProfileError(f"no deployed model for precision {precision!r}")


def latency_model(fp32_path: Path, model_path: Path, precision: str, calibration: Callable[[], np.ndarray],
                  resolution: int, batch: int, num_classes: int) -> tuple[Path, bool]:
    """The cached deployed model of ``fp32_path`` (static batch ``batch``), built if missing; (path, cached)."""
    if model_path.is_file():
        return model_path, True
    return build_deployed_model(fp32_path, model_path, precision, calibration, resolution, batch, num_classes), False


def trained_model_key(arch_key: str, profile: str, supernet_round: int, signature: Sequence[object]) -> str:
    """File stem of a trained INT8 model: the architecture, profile, adaptation round and a digest of
    what else decides its weights and ranges (checkpoint version, calibration count and seed)."""
    digest = hashlib.sha256(repr(tuple(signature)).encode()).hexdigest()[:10]
    return f"{arch_key}_{profile}_round{supernet_round}_{digest}"


def deployed_top1(subnet: nn.Module, model_path: Path, precision: str, calibration: Callable[[], np.ndarray],
                  val_batches: Iterable[tuple[torch.Tensor, torch.Tensor]], resolution: int, num_classes: int,
                  threads: int = 1) -> tuple[float, bool]:
    """Top-1 (percent) of ``subnet`` as a ``precision`` profile deploys it (``build_deployed_model``), cached at ``model_path``, run with ONNX Runtime on
    the CPU provider with ``threads`` threads over the preprocessed validation batches (streamed data
    never holds the whole split); (top-1, whether the cached model was reused).

    The CPU provider runs an fp16 model with float16 weights and, where it has no float16 kernel,
    casts around the operator; the figure is the accuracy of the converted weights, not of a GPU's
    float16 arithmetic."""
    from pipeline.onnx_runtime import ort_session
    from pipeline.supernet.export import export_onnx

    cached = model_path.is_file()
    if not cached:
        model_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=model_path.parent) as scratch:
            fp32 = export_onnx(subnet, Path(scratch) / "fp32.onnx", resolution, batch_size=2, dynamic_batch=True)
            build_deployed_model(fp32, model_path, precision, calibration, resolution, 2, num_classes)
    session = ort_session(model_path, "cpu", threads)
    predictions, labels = [], []
    for images, batch_labels in val_batches:
        predictions.append(onnx_predictions(model_path, images.float().numpy(), session=session))
        labels.append(batch_labels.numpy())
    return top1(np.concatenate(predictions), np.concatenate(labels)), cached
