"""The deploy bundle of a fine-tuned subnet: its ONNX models and ``card.json``, all measured.

``RUN_DIR/models/<arch_id>/`` holds

- ``fp32.onnx``: the subnet's own exit, exported with a free batch axis
  (``pipeline.supernet.export.export_checked`` measures its parity: the largest
  |ONNX Runtime - torch| logit on a seeded random probe);
- ``<profile>.int8.onnx`` for every configured hardware profile with ``precision: int8``:
  ``pipeline.quantize.quantize_int8`` of the fp32 file, calibrated on ``profile.calibration_images``
  training images drawn with the fine-tuning seed (``pipeline.data.calibration_subset``), at the
  subnet's resolution, prepared as the model's inputs are;
- ``<profile>.fp16.onnx`` for every profile with ``precision: fp16`` (CUDA, TensorRT):
  ``pipeline.quantize.convert_fp16`` of the fp32 file (float16 weights, float32 input and output);
- ``card.json`` (written atomically): per model file its precision, the top-1 that ONNX Runtime
  measures on the test split (the validation split when the data set has no test split), its
  parity (fp32: max |logit diff| against torch; int8 and fp16: top-1 agreement with the fp32 model
  on the same images, percent) and its latency on the profiles it is deployed on (``measure_onnx`` under
  the profile's settings, on this process's host, which the card names: fine-tuning trials run on
  whatever node Ray picks); and the input contract (resolution, NCHW float32 RGB, scaled to 0-1
  then standardised with the card's mean and std, resized to resolution / crop and centre-cropped),
  the class count and names, arch and arch_id. Evaluation images are read batch by batch, so a
  streamed test split (ImageNet's 50,000 images) is never held whole.

``build_bundle`` does all of that for one module and returns the flat columns the fine-tune row
gains (``BUNDLE_PREFIXES``, ``BUNDLE_KEYS``). fp32 profiles time ``fp32.onnx``; int8 and fp16
profiles time their own file and, as the reference of the ratio, ``fp32.onnx`` under the same
settings (``latency_fp32_ms@<profile>``). A profile whose execution provider this host lacks (a
CUDA profile on a CPU node) is not timed (NaN, with the reason in the card).

Sits above ``supernet``, ``data``, ``evaluate`` and ``quantize``. ``train`` cannot import it
(``evaluate`` reads ``train.files``): the stage layer hands ``deploy`` to fine-tuning, which calls it
in each Tune trial.
"""

from __future__ import annotations

import json
import logging
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.atomic import write_text_atomic
from pipeline.config import HardwareProfile
from pipeline.data import ImageSet, StreamedSplits, calibration_subset
from pipeline.data.augment import eval_transform
from pipeline.data.splits import Splits
from pipeline.errors import ProfileError
from pipeline.evaluate.latency import LatencyStats, measure_onnx
from pipeline.onnx_runtime import ort_session
from pipeline.quantize import agreement, convert_fp16, deployed_name, onnx_predictions, quantize_int8, top1
from pipeline.supernet.export import export_checked

_log = logging.getLogger(__name__)

FP32_FILE = "fp32.onnx"
CARD_FILE = "card.json"
CARD_VERSION = 1
#: the input contract every bundle's models share
INPUT_LAYOUT = {"layout": "NCHW", "dtype": "float32", "channels": "RGB",
                "scaling": "pixel / 255, then (x - mean) / std per channel, resized (bilinear) to "
                           "resolution / crop and the centre resolution x resolution square taken"}
#: flat columns of the fine-tune row with one entry per profile (``<prefix><profile>``)
BUNDLE_PREFIXES = ("test_top1@", "latency_ms@", "latency_p90_ms@", "latency_cv@", "latency_fp32_ms@",
                   "int8_agreement@", "int8_top1@", "fp16_agreement@", "fp16_top1@")
#: flat columns of the fine-tune row that are the same for every profile (``train.finetune`` keeps
#: these and every ``@`` column)
BUNDLE_KEYS = ("test_top1_fp32", "bundle_dir", "card_path", "timed_on", "eval_split")


def deployed_file(profile: str, precision: str) -> str:
    """The file name inside a bundle of the model an int8 or fp16 profile ``profile`` deploys."""
    return deployed_name(profile, precision)


def int8_file(profile: str) -> str:
    """The INT8 model's file name inside a bundle, for the int8 profile ``profile``."""
    return deployed_file(profile, "int8")


def preprocess(images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float], resolution: int,
               crop: float = 1.0, batch: int = 512) -> np.ndarray:
    """uint8 N x 3 x H x W images as the bundle's models take them: float32 N x 3 x R x R (the card's contract)."""
    parts = [eval_transform(images_uint8[i:i + batch], mean, std, resolution, crop).numpy()
             for i in range(0, len(images_uint8), batch)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 3, resolution, resolution), np.float32)


def calibration_set(splits: Splits | StreamedSplits, resolution: int, count: int, seed: int) -> np.ndarray:
    """``count`` training images (fewer if the split is smaller) drawn with ``seed``
    (``pipeline.data.calibration_subset``, as the search's INT8 profiles draw them), preprocessed."""
    return preprocess(calibration_subset(splits, count, seed), splits.mean, splits.std, resolution, splits.eval_crop)


@dataclass(frozen=True)
class EvalImages:
    """The labelled images a bundle's top-1 figures are measured on, and their split.

    They are read batch by batch for every model file (a streamed test split is never held whole),
    always in the same order, so the predictions of two files line up image for image."""

    images: ImageSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resolution: int
    crop: float
    split: str
    batch_size: int = 256

    @classmethod
    def of(cls, splits: Splits | StreamedSplits, resolution: int) -> EvalImages:
        """The test split, or the validation split when the data set has no test images."""
        test = len(splits.test) > 0
        return cls(splits.test if test else splits.val, tuple(splits.mean), tuple(splits.std), resolution,
                   splits.eval_crop, "test" if test else "val")

    def predictions(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """ONNX Runtime's predicted class per image of ``path`` (CPU provider) and the labels."""
        session = ort_session(path, "cpu", None)
        predicted, labels = [], []
        for images, batch_labels in self.images.batches(self.batch_size):
            batch = eval_transform(images, self.mean, self.std, self.resolution, self.crop).numpy()
            predicted.append(onnx_predictions(path, batch, session=session))
            labels.append(batch_labels.numpy())
        if not predicted:
            raise ProfileError(f"no {self.split} images to measure {path.name} on")
        return np.concatenate(predicted), np.concatenate(labels)


def _timed(path: Path, profile: HardwareProfile, resolution: int, seed: int) -> dict[str, Any]:
    """``measure_onnx`` of ``path`` under ``profile`` as a card entry (the reason when it cannot run here)."""
    try:
        stats: LatencyStats = measure_onnx(path, profile, resolution, seed=seed)
    except ProfileError as exc:
        _log.warning(f"deploy bundle: {path.name} not timed on profile {profile.name!r}: {exc}")
        return {"file": path.name, "median_ms": None, "skipped": str(exc)}
    return {"file": path.name, "median_ms": stats.median_ms, "p90_ms": stats.p90_ms, "cv": stats.cv,
            "repeats": stats.repeats, "rse": stats.rse, "provider": profile.provider,
            "threads": profile.threads, "batch_size": profile.batch_size, "resolution": resolution}


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


@dataclass(frozen=True)
class BundleInputs:
    """What a bundle is built from besides the module: where, which data, which profiles, which seed."""

    directory: Path
    arch: dict[str, Any]
    arch_id: str
    splits: Splits | StreamedSplits
    profiles: Sequence[HardwareProfile]
    seed: int = 0
    export_batch_size: int = 1


def _fp32_model(module: nn.Module, inputs: BundleInputs, resolution: int, data: EvalImages) -> tuple[dict, np.ndarray]:
    """Export and measure the fp32 model: (card entry without latency, its predictions on ``data``)."""
    path = inputs.directory / FP32_FILE
    diff = export_checked(module, path, resolution, inputs.export_batch_size, inputs.seed)
    predictions, labels = data.predictions(path)
    entry = {"file": FP32_FILE, "precision": "fp32", "test_top1": top1(predictions, labels),
             "parity": {"max_abs_logit_diff_vs_torch": diff, "probe": "seeded standard-normal batch"},
             "latency": {}}
    return entry, predictions


def _deployed_model(inputs: BundleInputs, profile: HardwareProfile, resolution: int, data: EvalImages,
                    fp32_predictions: np.ndarray) -> dict[str, Any]:
    """The fp32 file quantised (int8) or converted (fp16) for ``profile``, with its top-1 and agreement."""
    fp32_path = inputs.directory / FP32_FILE
    target = inputs.directory / deployed_file(profile.name, profile.precision)
    how: dict[str, Any]
    if profile.precision == "int8":
        calibration = calibration_set(inputs.splits, resolution, profile.calibration_images, inputs.seed)
        path = quantize_int8(fp32_path, target, calibration)
        how = {"calibration": {"images": len(calibration), "split": "train", "seed": inputs.seed,
                               "method": "ONNX Runtime quantize_static, QDQ, per-channel int8 weights, "
                                         "uint8 activations, MinMax"}}
    else:
        path = convert_fp16(fp32_path, target)
        how = {"conversion": "onnxconverter-common float16, float32 input and output; top-1 run by the CPU "
                             "provider (float16 weights, float32 where it lacks a float16 kernel)"}
    predictions, labels = data.predictions(path)
    return {"file": path.name, "precision": profile.precision, "profile": profile.name,
            "test_top1": top1(predictions, labels),
            "parity": {"top1_agreement_with_fp32_pct": agreement(predictions, fp32_predictions)},
            **how, "latency": {}}


def build_bundle(module: nn.Module, inputs: BundleInputs) -> dict[str, Any]:
    """Write the bundle of ``module`` (eval mode, one output on CPU) and return the row's flat columns."""
    resolution = int(inputs.arch["resolution"])
    inputs.directory.mkdir(parents=True, exist_ok=True)
    data = EvalImages.of(inputs.splits, resolution)
    fp32, fp32_predictions = _fp32_model(module, inputs, resolution, data)
    models: dict[str, dict[str, Any]] = {"fp32": fp32}
    for profile in inputs.profiles:
        if profile.precision != "fp32":
            models[f"{profile.precision}@{profile.name}"] = _deployed_model(inputs, profile, resolution, data,
                                                                            fp32_predictions)
    for profile in inputs.profiles:
        if profile.precision != "fp32":
            deployed = models[f"{profile.precision}@{profile.name}"]
            deployed["latency"][profile.name] = _timed(inputs.directory / deployed["file"], profile, resolution,
                                                       inputs.seed)
        # on an int8 or fp16 profile the fp32 file is timed too: the reference of the ratio
        fp32["latency"][profile.name] = _timed(inputs.directory / FP32_FILE, profile, resolution, inputs.seed)
    card = _card(inputs, resolution, data, models)
    card_path = write_text_atomic(inputs.directory / CARD_FILE, json.dumps(card, indent=2, allow_nan=False) + "\n")
    return row_columns(card, inputs.profiles) | {"bundle_dir": str(inputs.directory), "card_path": str(card_path)}


def _card(inputs: BundleInputs, resolution: int, data: EvalImages, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    splits = inputs.splits
    return _json_safe({
        "card_version": CARD_VERSION, "arch_id": inputs.arch_id, "arch": inputs.arch,
        "input": {**INPUT_LAYOUT, "resolution": resolution, "shape": ["batch", 3, resolution, resolution],
                  "mean": list(splits.mean), "std": list(splits.std), "crop": data.crop},
        "num_classes": splits.num_classes, "class_names": list(splits.class_names) or None,
        "dataset": splits.name, "eval_split": data.split, "eval_images": len(data.images),
        "timed_on": {"hostname": socket.gethostname(), "node_id": _ray_node_id()},
        "profiles": {p.name: {"precision": p.precision, "provider": p.provider, "threads": p.threads,
                              "batch_size": p.batch_size} for p in inputs.profiles},
        "models": models,
    })


def _ray_node_id() -> str | None:
    """The Ray node this process runs on, when it runs inside Ray."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - the node id is a note on the card, never a reason to fail
        return None


def _json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None and tuples as lists (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def row_columns(card: dict[str, Any], profiles: Sequence[HardwareProfile]) -> dict[str, Any]:
    """The flat fine-tune row columns of a card (``BUNDLE_PREFIXES`` per profile, ``BUNDLE_KEYS``)."""
    models = card["models"]
    fp32 = models["fp32"]
    row: dict[str, Any] = {"test_top1_fp32": fp32["test_top1"], "timed_on": card["timed_on"]["hostname"],
                           "eval_split": card["eval_split"]}
    for profile in profiles:
        name = profile.name
        deployed = fp32 if profile.precision == "fp32" else models.get(f"{profile.precision}@{name}")
        if deployed is None:
            continue
        timing = deployed["latency"].get(name, {})
        row[f"test_top1@{name}"] = deployed["test_top1"]
        row[f"latency_ms@{name}"] = _number(timing.get("median_ms"))
        row[f"latency_p90_ms@{name}"] = _number(timing.get("p90_ms"))
        row[f"latency_cv@{name}"] = _number(timing.get("cv"))
        if profile.precision != "fp32":
            row[f"latency_fp32_ms@{name}"] = _number(fp32["latency"].get(name, {}).get("median_ms"))
            row[f"{profile.precision}_top1@{name}"] = deployed["test_top1"]
            row[f"{profile.precision}_agreement@{name}"] = deployed["parity"]["top1_agreement_with_fp32_pct"]
    return row


def deploy(module: nn.Module, *, directory: Path, arch: dict[str, Any], arch_id: str, splits: Splits | StreamedSplits,
           profiles: Sequence[HardwareProfile], seed: int = 0, export_batch_size: int = 1) -> dict[str, Any]:
    """Fine-tuning's deploy hook: ``build_bundle``'s columns plus ``onnx_path`` and ``onnx_max_abs_diff``."""
    columns = build_bundle(module, BundleInputs(directory=Path(directory), arch=arch, arch_id=arch_id, splits=splits,
                                                profiles=profiles, seed=seed, export_batch_size=export_batch_size))
    card = read_card(directory)
    return {**columns, "onnx_path": str(Path(directory) / FP32_FILE),
            "onnx_max_abs_diff": card["models"]["fp32"]["parity"]["max_abs_logit_diff_vs_torch"]}


def read_card(bundle_dir: str | Path) -> dict[str, Any]:
    """The ``card.json`` of a bundle folder."""
    return json.loads((Path(bundle_dir) / CARD_FILE).read_text())
