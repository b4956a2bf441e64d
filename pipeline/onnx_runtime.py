"""The one ONNX Runtime session factory and the one execution-provider table.

``PROVIDERS`` maps a short provider name (the ``provider`` of a hardware profile, or what
``ort_session`` callers pass) to the chain of ONNX Runtime providers a session is opened with:
the accelerator first, then what ONNX Runtime falls back to for nodes the first cannot run.
``provider_chain`` checks the chain against what this node's ONNX Runtime has and raises
``ProfileError`` when the first provider is missing. ``ort_session`` opens an
``InferenceSession`` with every setting that moves a latency figure fixed explicitly: intra- and
inter-op threads, graph optimisation level, execution mode and intra-op thread spinning
(the ``session.intra_op.allow_spinning`` session config entry).

A leaf beside ``errors``: ``supernet`` (export) and ``evaluate`` (latency) both import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ProfileError

CPU = "CPUExecutionProvider"
PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": (CPU,),
    "cuda": ("CUDAExecutionProvider", CPU),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU),
    "openvino": ("OpenVINOExecutionProvider", CPU),
    "coreml": ("CoreMLExecutionProvider", CPU),
    "directml": ("DmlExecutionProvider", CPU),
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")


def short_provider(provider: str) -> str:
    """The table's short name of ``provider``, given as a short name or a full ONNX Runtime name."""
    if provider.lower() in PROVIDERS:
        return provider.lower()
    for short, chain in PROVIDERS.items():
        if provider == chain[0]:
            return short
    raise ProfileError(
        f"unknown execution provider {provider!r}; expected one of: {', '.join(PROVIDERS)} or a full ONNX Runtime name"
    )


def provider_name(provider: str) -> str:
    """ONNX Runtime's name of the first provider of ``provider`` (a short name or a full name)."""
    return PROVIDERS[short_provider(provider)][0]


def provider_chain(provider: str, available: Sequence[str] | None = None, who: str | None = None) -> list[str]:
    """The providers to open a session with, in order; ``ProfileError`` when this node lacks the first.

    ``who`` names what asked (a hardware profile) in the error message.
    """
    wanted = PROVIDERS[short_provider(provider)]
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if wanted[0] not in available:
        subject = f"{who} needs {wanted[0]}, which this node's ONNX Runtime lacks" if who else \
            f"execution provider {wanted[0]} is not available here"
        raise ProfileError(f"{subject} (available: {', '.join(available)})")
    return [name for name in wanted if name in available]


def session_options(threads: int | None, optimization_level: str = "all", execution_mode: str = "sequential",
                    allow_spinning: bool | None = None) -> Any:
    """``onnxruntime.SessionOptions`` with the given settings (``threads=None``: ONNX Runtime's default)."""
    import onnxruntime as ort

    if optimization_level not in OPTIMIZATION_LEVELS:
        raise ProfileError(
            f"optimization level {optimization_level!r} is unknown; expected one of: {', '.join(OPTIMIZATION_LEVELS)}"
        )
    if execution_mode not in EXECUTION_MODES:
        raise ProfileError(f"execution mode {execution_mode!r} is unknown; expected one of: {', '.join(EXECUTION_MODES)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization_level]
    options.execution_mode = (ort.ExecutionMode.ORT_SEQUENTIAL if execution_mode == "sequential"
                              else ort.ExecutionMode.ORT_PARALLEL)
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if allow_spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    options.log_severity_level = 3
    return options


def ort_session(
    path: str | Path,
    provider: str = "cpu",
    threads: int | None = None,
    optimization_level: str = "all",
    execution_mode: str = "sequential",
    allow_spinning: bool | None = None,
    who: str | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``provider``'s chain with fixed settings.

    ``ProfileError`` when the provider is unknown or missing here, a setting is unknown, or the
    model file does not exist.
    """
    import onnxruntime as ort

    providers = provider_chain(provider, who=who)
    options = session_options(threads, optimization_level, execution_mode, allow_spinning)
    if not Path(path).is_file():
        raise ProfileError(f"ONNX model {path} does not exist")
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)
