"""The run directory: every path of a run's layout, and the open/resume checks.

```
RUN_DIR/
  config.yaml            the resolved config (written once the inputs are known to be good)
  stages.json            the completed stages, in order
  supernet/supernet.pt   the trained (and, after adaptation, adapted) supernet
  train/ tune/           Ray Train and Ray Tune storage (checkpoints, trial state)
  train_metrics.parquet  one row per training epoch
  archive.parquet        every truly evaluated architecture
  fronts/iter_NNN.parquet, front.parquet, search_history.parquet, search_state.json
  generator/             the fitted PNAG generator
  generated.parquet, finetuned.parquet, plots/*.png, logs/, report.html
  models/<arch_id>/      a fine-tuned subnet's deploy bundle: fp32.onnx, <profile>.int8.onnx, card.json
```

A new run refuses a directory that already holds a run, so nothing is overwritten silently;
``--resume`` reopens it and continues after the last completed stage. Each stage's own resume
(training checkpoints, the search's engine state) continues the stage that was interrupted.

The packages that write into the directory own the names of their files (``search.files``,
``train.files``); ``RunDir`` gathers them for the stages, the jobs and the readers of a run. The
packages themselves are handed a directory and never import this module. Opening a run writes
``config.yaml`` and nothing else: the job's log is attached by ``pipeline.runtime.open_run``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import write_text_atomic
from pipeline.config import PipelineConfig, dump_config, load_config
from pipeline.errors import ConfigError, ResultsError
from pipeline.schema import utc_now
from pipeline.search.files import SearchFiles
from pipeline.train.files import TrainFiles


@dataclass(frozen=True)
class RunDir:
    """One run directory and the names of everything in it."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, run_dir: str | Path | RunDir) -> RunDir:
        """``run_dir`` as a ``RunDir`` (paths and ``RunDir`` objects alike)."""
        return run_dir if isinstance(run_dir, RunDir) else cls(Path(run_dir))

    @classmethod
    def default(cls, config: PipelineConfig) -> RunDir:
        """``runs/<run.name>``, the directory a job uses when no ``--out`` is given."""
        return cls(Path("runs") / config.run.name)

    # ------------------------------------------------------------------- the layout
    config_file = property(lambda self: self.root / "config.yaml")
    stages_file = property(lambda self: self.root / "stages.json")
    search_files = property(lambda self: SearchFiles(self.root))
    train_files = property(lambda self: TrainFiles(self.root))
    supernet_dir = property(lambda self: self.train_files.supernet_dir)
    supernet = property(lambda self: self.train_files.supernet)
    train_storage = property(lambda self: self.train_files.train_storage)
    tune_storage = property(lambda self: self.train_files.tune_storage)
    train_metrics = property(lambda self: self.train_files.metrics)
    archive = property(lambda self: self.search_files.archive)
    front = property(lambda self: self.search_files.front)
    fronts_dir = property(lambda self: self.search_files.fronts_dir)
    search_history = property(lambda self: self.search_files.history)
    search_state = property(lambda self: self.search_files.state)
    generator_dir = property(lambda self: self.root / "generator")
    generated = property(lambda self: self.root / "generated.parquet")
    finetuned = property(lambda self: self.train_files.finetuned)
    models_dir = property(lambda self: self.train_files.models_dir)
    plots_dir = property(lambda self: self.root / "plots")
    logs_dir = property(lambda self: self.root / "logs")
    report = property(lambda self: self.root / "report.html")

    def front_at(self, iteration: int) -> Path:
        """The front after search iteration ``iteration`` (``fronts/iter_NNN.parquet``)."""
        return self.search_files.front_at(iteration)

    def model(self, arch_id: str) -> Path:
        """The exported fp32 ONNX file of a fine-tuned subnet (in its deploy bundle)."""
        return self.train_files.model(arch_id)

    def bundle(self, arch_id: str) -> Path:
        """The deploy bundle folder of a fine-tuned subnet (``pipeline.deploy_bundle``)."""
        return self.train_files.bundle(arch_id)

    def plot(self, name: str) -> Path:
        return self.plots_dir / name

    # ------------------------------------------------------------- open and resume
    def holds_run(self) -> bool:
        return self.config_file.exists() or self.stages_file.exists()

    def check_location(self) -> RunDir:
        """Refuse a path that is a file, or lies under one; returns the directory made absolute."""
        resolved = RunDir(self.root.resolve())
        if resolved.root.exists() and not resolved.root.is_dir():
            raise ConfigError(f"--out {resolved.root} is a file, not a run directory")
        blocking = next((p for p in resolved.root.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise ConfigError(f"--out {resolved.root}: {blocking} is a file, so no run directory can be made there")
        return resolved

    def check(self, resume: bool) -> RunDir:
        """Refuse, without writing anything, a new run over an existing one or a resume of no run.

        Returns the directory with an absolute root (Ray Train needs absolute storage paths).
        """
        resolved = self.check_location()
        if resume and not resolved.config_file.is_file():
            raise ConfigError(f"--resume: {resolved.root} holds no run ({resolved.config_file.name} is missing)")
        if not resume and resolved.holds_run():
            raise ConfigError(
                f"{resolved.root} already holds a run; pass --resume to continue it or choose another --out"
            )
        return resolved

    def open(self, config: PipelineConfig | None, resume: bool) -> tuple[PipelineConfig, RunDir]:
        """Create (or, with ``resume``, reopen) the directory; return its config and itself.

        On resume without a config, the stored ``config.yaml`` is used.
        """
        run_dir = self.check(resume)
        if resume:
            config = config or load_config(run_dir.config_file)
        else:
            if config is None:
                raise ConfigError("a new run needs --config (or defaults)")
            run_dir.root.mkdir(parents=True, exist_ok=True)
        dump_config(config, run_dir.config_file)
        return config, run_dir

    def stored_config(self) -> Path | None:
        """The stored ``config.yaml``, or None when the directory holds none."""
        return self.config_file if self.config_file.is_file() else None

    def completed_stages(self) -> list[str]:
        """Stages recorded as completed, in order."""
        path = self.stages_file
        if not path.exists():
            return []
        try:
            return [entry["stage"] for entry in json.loads(path.read_text())["completed"]]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ResultsError(f"{path} is corrupt; delete it to rerun every stage") from None

    def mark_completed(self, stage: str, **details: object) -> None:
        """Record ``stage`` as completed (atomically)."""
        path = self.stages_file
        entries = json.loads(path.read_text())["completed"] if path.exists() else []
        entries = [e for e in entries if e["stage"] != stage]
        entries.append({"stage": stage, "finished_at": utc_now(), **details})
        write_text_atomic(path, json.dumps({"completed": entries}, indent=1, default=str))

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return str(self.root)

