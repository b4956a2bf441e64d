"""The run directory: its creation, its stored config, and which stages have completed.

A run directory holds ``config.yaml`` (the resolved config) and ``stages.json`` (the completed
stages, in order). A new run refuses a directory that already holds a run, so nothing is
overwritten silently; ``--resume`` reopens it and continues after the last completed stage.
Each stage's own resume (training checkpoints, the search's engine state) continues the stage
that was interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.atomic import write_text_atomic
from pipeline.config import PipelineConfig, dump_config, load_config
from pipeline.errors import ConfigError, ResultsError
from pipeline.schema import utc_now

CONFIG_FILE = "config.yaml"
STAGES_FILE = "stages.json"


def default_run_dir(config: PipelineConfig) -> Path:
    return Path("runs") / config.run.name


def check_run_dir(run_dir: str | Path, resume: bool) -> Path:
    """Refuse, without writing anything, a new run over an existing one or a resume of no run."""
    run_dir = Path(run_dir).resolve()
    stored = run_dir / CONFIG_FILE
    if resume and not stored.is_file():
        raise ConfigError(f"--resume: {run_dir} holds no run ({CONFIG_FILE} is missing)")
    if not resume and (stored.exists() or (run_dir / STAGES_FILE).exists()):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    return run_dir


def open_run_dir(config: PipelineConfig | None, run_dir: str | Path, resume: bool) -> tuple[PipelineConfig, Path]:
    """Create (or, with ``resume``, reopen) a run directory and return its config and path.

    On resume without a config, the stored ``config.yaml`` is used.
    """
    run_dir = check_run_dir(run_dir, resume)
    stored = run_dir / CONFIG_FILE
    if resume:
        config = config or load_config(stored)
    else:
        if config is None:
            raise ConfigError("a new run needs --config (or defaults)")
        run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, stored)
    return config, run_dir


def completed_stages(run_dir: str | Path) -> list[str]:
    """Stages recorded as completed, in order."""
    path = Path(run_dir) / STAGES_FILE
    if not path.exists():
        return []
    try:
        return [entry["stage"] for entry in json.loads(path.read_text())["completed"]]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ResultsError(f"{path} is corrupt; delete it to rerun every stage") from None


def mark_completed(run_dir: str | Path, stage: str, **details: object) -> None:
    """Record ``stage`` as completed (atomically)."""
    path = Path(run_dir) / STAGES_FILE
    entries = json.loads(path.read_text())["completed"] if path.exists() else []
    entries = [e for e in entries if e["stage"] != stage]
    entries.append({"stage": stage, "finished_at": utc_now(), **details})
    write_text_atomic(path, json.dumps({"completed": entries}, indent=1, default=str))
