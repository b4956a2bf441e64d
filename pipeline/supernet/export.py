"""ONNX export of extracted subnets and ONNX Runtime sessions.

``export_checked`` exports with a free batch axis and measures ONNX Runtime against torch.
``export_onnx`` writes a module (in eval mode) to ONNX with a fixed input shape
``(batch_size, 3, resolution, resolution)`` (or a free batch axis with ``dynamic_batch``), input ``input`` and outputs ``logits`` (or
``exit_1 .. exit_N`` for a multi-output, all-exit module). It uses torch's TorchScript-based
exporter (``dynamo=False``), which needs no extra packages and is fast for these small CNNs, and
writes atomically (temporary file, then ``os.replace``). BN is left as ``BatchNormalization``
nodes; ONNX Runtime folds them into the convolutions when it optimises the graph.

ONNX Runtime sessions come from ``pipeline.onnx_runtime``, the one session factory and provider
table (hardware-profile latency uses the same one).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.atomic import atomic_path
from pipeline.onnx_runtime import ort_session

__all__ = ["DEFAULT_OPSET", "export_checked", "export_onnx"]

DEFAULT_OPSET = 17


def _output_count(module: nn.Module, example: torch.Tensor) -> int:
    with torch.no_grad():
        output = module(example)
    return len(output) if isinstance(output, (tuple, list)) else 1


def export_onnx(module: nn.Module, path: str | Path, resolution: int, batch_size: int = 1,
                opset: int | None = None, dynamic_batch: bool = False) -> Path:
    """Export ``module`` to ONNX at ``path`` (atomically) and return the path.

    ``dynamic_batch`` leaves the batch axis of the input and outputs free (``batch_size`` is then
    only the example's batch), for models that are run on data rather than timed.
    """
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
                dynamic_axes={name: {0: "batch"} for name in ["input", *names]} if dynamic_batch else None,
            )
    finally:
        module.train(was_training)
    return path


def export_checked(module: nn.Module, path: str | Path, resolution: int, batch_size: int = 1, seed: int = 0) -> float:
    """Export ``module`` with a free batch axis and return the largest |ONNX Runtime - torch| of its
    last output on a seeded standard-normal probe of ``batch_size`` images."""
    export_onnx(module, path, resolution, batch_size=batch_size, dynamic_batch=True)
    probe = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        output = module(probe)
    expected = (list(output) if isinstance(output, (tuple, list)) else [output])[-1].numpy()
    session = ort_session(path)
    produced = session.run(None, {session.get_inputs()[0].name: probe.numpy()})[-1]
    return float(np.abs(produced - expected).max())
