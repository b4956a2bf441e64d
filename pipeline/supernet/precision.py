"""Mixed precision and memory format of the forward passes (docs/methods.md, "Training").

``ForwardPrecision`` turns one ``train.precision`` / ``evaluate.precision`` value (``fp32``,
``bf16``, ``fp16``) and the device the passes run on into what the loops use:

- ``autocast()``: ``torch.autocast(device_type, dtype)`` for bf16/fp16; for fp32 a
  ``contextlib.nullcontext``, so the fp32 path is exactly the one without mixed precision;
- ``grad_scaler()``: a ``torch.amp.GradScaler`` for fp16 only (bf16 has fp32's exponent range and
  needs no loss scaling); None otherwise;
- ``channels_last``: on CUDA with bf16/fp16 the model and its input batches use the NHWC memory
  format (the tensor-core convolution kernels' own); never on CPU, and never for fp32, whose
  kernels, and so whose numbers, stay as they are;
- ``float_logits``: the logits cast to float32, on which every loss and softmax is computed;
- ``scaled_backward`` and ``optimizer_step``: the backward pass and the step, through the fp16
  gradient scaler when there is one (training, fine-tuning and the data benchmark share them).

fp16 on a CPU is refused with one ``ConfigError`` line: torch's CPU kernels have no native float16
arithmetic on most processors (measured on an AVX-512 core: a convolution block's training step
took 26x fp32's time in fp16, against 2.8x in bf16), and fp16 also needs loss scaling, which
bf16 does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import ConfigError

#: the precisions a config may name
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: why fp16 is refused on a CPU (the config check and the runtime check say the same)
FP16_NEEDS_CUDA = ("fp16 needs a CUDA device (torch has no fast float16 arithmetic on CPUs); "
                   "use bf16 on CPU")


@dataclass(frozen=True)
class ForwardPrecision:
    """One precision on one device type (see the module docstring)."""

    name: str = "fp32"
    device_type: str = "cpu"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ConfigError(f"precision {self.name!r} is not one of {', '.join(PRECISIONS)}")
        if self.name == "fp16" and self.device_type != "cuda":
            raise ConfigError(f"precision: {FP16_NEEDS_CUDA}")

    @classmethod
    def on(cls, name: str, device: torch.device | str) -> ForwardPrecision:
        """``name`` on ``device``'s type."""
        return cls(name, torch.device(device).type)

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    @property
    def channels_last(self) -> bool:
        return self.mixed and self.device_type == "cuda"

    def autocast(self) -> AbstractContextManager:
        """The context for forward passes: autocast for bf16/fp16, nothing at all for fp32."""
        if not self.mixed:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=_AUTOCAST_DTYPES[self.name])

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh gradient scaler for fp16; None for fp32 and bf16."""
        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None

    def prepare_model(self, module: nn.Module) -> nn.Module:
        """``module`` in channels_last where that applies (in place, like ``Module.to``)."""
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def prepare_batch(self, images: torch.Tensor) -> torch.Tensor:
        """An image batch in channels_last where that applies; otherwise ``images`` itself."""
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images


#: the plain fp32 path on the CPU
FP32 = ForwardPrecision()


def float_logits(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """Logits (or a list of exits' logits) as float32; a float32 tensor is returned as itself."""
    if isinstance(output, torch.Tensor):
        return output.float()
    return [logits.float() for logits in output]


def scaled_backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward()``, scaled first when ``scaler`` is set (fp16)."""
    (loss if scaler is None else scaler.scale(loss)).backward()


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """``optimizer.step()``; with a scaler, unscale, skip the step when a gradient is not finite, update."""
    if scaler is None:
        optimizer.step()
        return
    scaler.step(optimizer)
    scaler.update()
