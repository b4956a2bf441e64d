"""Ray Train plumbing shared by supernet training and search-time adaptation.

- ``torch_trainer``: the ``TorchTrainer`` for a worker loop: gloo on CPU or NCCL on GPU
  (``train.use_gpu``), each worker reserving ``train.threads_per_worker`` CPUs (1 when unset);
  ``num_workers = 0`` is Ray Train's in-process mode;
- ``fit_trainer``: ``trainer.fit()`` where Ctrl-C ends as ``KeyboardInterrupt`` (so the job says
  "interrupted"), whatever Ray Train's own SIGINT handler turned it into;
- ``torch_threads``: inside a worker, torch's intra-op thread count set for the loop and restored
  afterwards (unchanged when ``threads`` is None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from pipeline.config import TrainConfig


def torch_trainer(loop: Callable[[dict[str, Any]], Any], loop_config: dict[str, Any], train: TrainConfig,
                  num_workers: int, run_config: Any) -> Any:
    """A ``ray.train.torch.TorchTrainer`` running ``loop(loop_config)`` on ``num_workers`` workers."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if train.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=train.use_gpu,
                                     resources_per_worker={"CPU": float(train.threads_per_worker or 1)}),
        run_config=run_config,
    )


def fit_trainer(trainer: Any) -> Any:
    """``trainer.fit()``; a Ctrl-C during it raises ``KeyboardInterrupt``.

    In the driver's main thread Ray Train V2 replaces the SIGINT handler while ``fit`` runs: the
    first Ctrl-C aborts the controller actor, which then exits, so ``fit`` ends with
    ``SystemExit`` (raised by that handler) or with the dead controller's ``RayActorError``
    instead of ``KeyboardInterrupt``. Our own handler is chained in front of Ray's (it is
    re-installed around Ray's by wrapping ``signal.signal`` for the duration of ``fit``), notes
    the interrupt and passes it on, and afterwards whatever ``fit`` raised becomes
    ``KeyboardInterrupt``.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return trainer.fit()
    interrupted = threading.Event()
    install = signal.signal

    def chained(signum: int, handler: Any) -> Any:
        if signum != signal.SIGINT or not callable(handler):
            return install(signum, handler)

        def noted(number: int, frame: Any) -> None:
            interrupted.set()
            handler(number, frame)
        return install(signum, noted)

    previous = signal.getsignal(signal.SIGINT)
    signal.signal = chained  # type: ignore[assignment]
    try:
        return trainer.fit()
    except BaseException as error:
        if interrupted.is_set():
            raise KeyboardInterrupt from error
        raise
    finally:
        signal.signal = install  # type: ignore[assignment]
        install(signal.SIGINT, previous)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (when given); the previous count is restored."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
