"""INT8 and fp16 models of an exported fp32 ONNX model, and top-1 measured by ONNX Runtime.

``quantize_int8`` turns an fp32 ONNX model into an INT8 one the way deployment toolchains do:
ONNX Runtime's pre-processing (shape inference and graph optimisation), then
``quantize_static`` in QDQ format (QuantizeLinear / DequantizeLinear pairs around every
quantised operator, which every ONNX Runtime provider understands), signed 8-bit weights
quantised per output channel, unsigned 8-bit activations, ranges calibrated with MinMax on a fixed
set of images the caller draws (seeded, at the architecture's resolution). The file is written
atomically, so a crash never leaves a half-written model in a cache.

``onnx_predictions`` runs a model on images with ONNX Runtime and returns the predicted class of
its last output (the deployed exit of an early-exit network); ``top1`` and ``agreement`` turn
predictions into the figures a deploy card reports. ``INT8_PROVIDERS`` lists the providers an
``int8`` hardware profile may name: the CPU provider runs QDQ models with integer kernels, and
TensorRT builds INT8 engines from them; the CUDA provider has no INT8 convolution and runs them
dequantised, so an INT8 latency there would be a fp32 figure under another name.

``convert_fp16`` makes the fp16 model a CUDA or TensorRT profile deploys (``FP16_PROVIDERS``):
float16 weights and operators with float32 input and output, by ``onnxconverter-common``.

A leaf beside ``onnx_runtime``: it imports only that, ``atomic`` and ``errors``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.errors import ProfileError
from pipeline.onnx_runtime import ort_session

#: providers whose ONNX Runtime kernels run a QDQ model in INT8
INT8_PROVIDERS: tuple[str, ...] = ("cpu", "tensorrt")
#: providers with float16 kernels worth timing (the CPU provider runs fp16 models, but slowly)
FP16_PROVIDERS: tuple[str, ...] = ("cuda", "tensorrt")
#: the file suffix of each deployed precision's model beside the exported fp32 one
PRECISION_SUFFIX = {"int8": ".int8.onnx", "fp16": ".fp16.onnx"}


def deployed_name(stem: str, precision: str) -> str:
    """The file name of the ``precision`` (int8 or fp16) model with ``stem``: ``<stem>.<precision>.onnx``."""
    return f"{stem}{PRECISION_SUFFIX[precision]}"


def _input_batch(model_path: Path) -> int | None:
    """The fixed batch size of the model's input, or None when the batch axis is dynamic."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _chunks(images: np.ndarray, batch: int | None) -> Iterator[np.ndarray]:
    """``images`` in chunks of the model's batch (a remainder shorter than a fixed batch is dropped)."""
    step = batch or min(len(images), 64)
    stop = len(images) - len(images) % step if batch else len(images)
    for start in range(0, stop, step):
        yield np.ascontiguousarray(images[start:start + step], dtype=np.float32)


class _CalibrationImages:
    """ONNX Runtime's ``CalibrationDataReader`` over a fixed array of images (one pass)."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int | None) -> None:
        self._feeds = ({input_name: chunk} for chunk in _chunks(images, batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # pragma: no cover - MinMax calibration reads the data once
        raise NotImplementedError


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: np.ndarray) -> Path:
    """Quantise ``fp32_path`` to a QDQ INT8 model at ``int8_path`` calibrated on ``calibration``.

    ``calibration`` is float32 N x 3 x R x R, normalised exactly as the model's inputs are. A model
    with a fixed batch size B is calibrated on the first ``N - N % B`` images; N must be >= B.
    ``ProfileError`` when there are too few images or quantisation fails.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    batch = _input_batch(fp32_path)
    if calibration.ndim != 4 or len(calibration) < (batch or 1):
        raise ProfileError(f"INT8 calibration needs at least {batch or 1} images N x 3 x R x R, "
                           f"got shape {calibration.shape}")
    import onnx

    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as scratch, atomic_path(int8_path) as tmp:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        try:
            quantize_static(
                str(prepared), str(tmp), _CalibrationImages(input_name, calibration, batch),
                quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax,
                extra_options={"CalibTensorRangeSymmetric": False},
            )
        except Exception as exc:  # onnxruntime raises plain exceptions of many kinds here
            raise ProfileError(f"INT8 quantisation of {fp32_path.name} failed: {exc}") from exc
    return int8_path


def convert_fp16(fp32_path: str | Path, fp16_path: str | Path) -> Path:
    """The fp32 model at ``fp32_path`` with float16 weights and arithmetic, written atomically to ``fp16_path``.

    ``onnxconverter_common.float16`` converts every initialiser and operator it can to float16 and
    keeps the input and output float32 (``keep_io_types``), so the model's input contract does not
    change; values outside float16's range are clipped to it (the converter warns).
    """
    import warnings

    import onnx
    from onnxconverter_common import float16

    fp16_path = Path(fp16_path)
    fp16_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per clipped tiny weight
        model = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    with atomic_path(fp16_path) as tmp:
        onnx.save(model, str(tmp))
    return fp16_path


def onnx_predictions(path: str | Path, images: np.ndarray, provider: str = "cpu", threads: int | None = 1,
                     session: Any = None) -> np.ndarray:
    """Predicted class per image from the model's last output (N int64), run with ONNX Runtime.

    A model with a fixed batch size B runs the images in chunks of B, the last chunk padded with
    its final image (the padding's predictions are dropped).
    """
    session = session or ort_session(path, provider, threads)
    batch = session.get_inputs()[0].shape[0]
    batch = batch if isinstance(batch, int) and batch > 0 else None
    input_name = session.get_inputs()[0].name
    predictions: list[np.ndarray] = []
    step = batch or 256
    for start in range(0, len(images), step):
        chunk = np.ascontiguousarray(images[start:start + step], dtype=np.float32)
        real = len(chunk)
        if batch and real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
        logits = session.run(None, {input_name: chunk})[-1]
        predictions.append(np.asarray(logits)[:real].argmax(axis=1))
    return np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)


def top1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``predictions`` equal to ``labels``, in percent."""
    if len(predictions) != len(labels) or not len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    return float(100.0 * np.mean(np.asarray(predictions) == np.asarray(labels)))


def agreement(predictions: np.ndarray, reference: np.ndarray) -> float:
    """Share of images on which two models predict the same class, in percent."""
    return top1(predictions, reference)
