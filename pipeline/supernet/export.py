"""ONNX export of extracted subnets and ONNX Runtime sessions.

``export_onnx`` writes a module (in eval mode) to ONNX with a fixed input shape
``(batch_size, 3, resolution, resolution)``, input ``input`` and outputs ``logits`` (or
``exit_1 .. exit_N`` for a multi-output, all-exit module). It uses torch's TorchScript-based
exporter (``dynamo=False``), which needs no extra packages and is fast for these small CNNs, and
writes atomically (temporary file, then ``os.replace``). BN is left as ``BatchNormalization``
nodes; ONNX Runtime folds them into the convolutions when it optimises the graph.

``ort_session`` opens an ``onnxruntime.InferenceSession`` with a fixed thread count and
optimisation level, and raises ``ProfileError`` when the execution provider is unavailable.
``provider_name`` maps short names (cpu, cuda, tensorrt, ...) to ONNX Runtime provider names.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from pipeline.atomic import atomic_path
from pipeline.errors import ProfileError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
DEFAULT_OPSET = 17


def provider_name(provider: str) -> str:
    """ONNX Runtime's name of an execution provider given as a short name or its full name."""
    if provider in PROVIDERS.values():
        return provider
    try:
        return PROVIDERS[provider.lower()]
    except KeyError:
        raise ProfileError(
            f"unknown execution provider {provider!r}; expected one of: {', '.join(PROVIDERS)} or a full ONNX Runtime name"
        ) from None


def _output_count(module: nn.Module, example: torch.Tensor) -> int:
    with torch.no_grad():
        output = module(example)
    return len(output) if isinstance(output, (tuple, list)) else 1


def export_onnx(module: nn.Module, path: str | Path, resolution: int, batch_size: int = 1,
                opset: int | None = None) -> Path:
    """Export ``module`` to ONNX at ``path`` (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(module.parameters()).device
    example = torch.zeros(batch_size, 3, resolution, resolution, device=device)
    was_training = module.training
    module.eval()
    try:
        count = _output_count(module, example)
        names = ["logits"] if count == 1 else [f"exit_{i + 1}" for i in range(count)]
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (example,), str(tmp), input_names=["input"], output_names=names,
                opset_version=opset or DEFAULT_OPSET, dynamo=False, do_constant_folding=True,
            )
    finally:
        module.train(was_training)
    return path


def ort_session(path: str | Path, provider: str = "CPUExecutionProvider", threads: int | None = None,
                optimization_level: str = "all"):
    """An ``onnxruntime.InferenceSession`` on one provider with fixed threads and optimisation level."""
    import onnxruntime as ort

    name = provider_name(provider)
    available = ort.get_available_providers()
    if name not in available:
        raise ProfileError(f"execution provider {name} is not available here (available: {', '.join(available)})")
    if optimization_level not in OPTIMIZATION_LEVELS:
        raise ProfileError(
            f"optimization level {optimization_level!r} is unknown; expected one of: {', '.join(OPTIMIZATION_LEVELS)}"
        )
    if not Path(path).is_file():
        raise ProfileError(f"ONNX model {path} does not exist")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization_level]
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=[name])
