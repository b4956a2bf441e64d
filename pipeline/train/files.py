"""The files training and fine-tuning write into the run directory they are given.

The stage layer hands ``train_supernet``, ``adapt_supernet`` and ``finetune_run`` one directory;
this module owns the names of what they keep there, and ``pipeline.run_dir.RunDir`` exposes the
same names to readers of a run. Evaluation and generation read the published supernet through
``published_supernet``. The module imports nothing heavy (no torch), so reading names is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: where a run directory keeps its published supernet (training writes it; adaptation republishes
#: it; evaluation, generation and fine-tuning read it)
PUBLISHED_SUPERNET = Path("supernet") / "supernet.pt"


def published_supernet(run_dir: str | Path) -> Path:
    """The published supernet file of the run directory ``run_dir``."""
    return Path(run_dir) / PUBLISHED_SUPERNET


@dataclass(frozen=True)
class TrainFiles:
    """Training's and fine-tuning's files under ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def supernet(self) -> Path:
        """The published supernet (after adaptation, the adapted one)."""
        return published_supernet(self.root)

    @property
    def supernet_dir(self) -> Path:
        return self.supernet.parent

    @property
    def trained_supernet(self) -> Path:
        """The supernet as training left it, kept once adaptation starts replacing ``supernet``."""
        return self.supernet_dir / "trained.pt"

    @property
    def train_storage(self) -> Path:
        """Ray Train's storage (checkpoints, the run name)."""
        return self.root / "train"

    @property
    def tune_storage(self) -> Path:
        """Ray Tune's storage for the fine-tuning trials."""
        return self.root / "tune"

    @property
    def metrics(self) -> Path:
        """One row per training epoch."""
        return self.root / "train_metrics.parquet"

    @property
    def finetuned(self) -> Path:
        """One row per fine-tuned subnet."""
        return self.root / "finetuned.parquet"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def bundle(self, arch_id: str) -> Path:
        """The deploy bundle folder of a fine-tuned subnet (``pipeline.deploy_bundle``)."""
        return self.models_dir / arch_id

    def model(self, arch_id: str) -> Path:
        """The exported fp32 ONNX file of a fine-tuned subnet (``deploy_bundle.FP32_FILE``)."""
        return self.bundle(arch_id) / "fp32.onnx"
