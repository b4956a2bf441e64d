"""The pipeline's stages on one run directory: train, search, generate, finetune, report.

Each ``run_*_stage`` function does one stage from a validated ``PipelineConfig``; the jobs in
``jobs/`` call them, and ``run_pipeline`` runs them in order, skipping stages recorded as
completed in ``stages.json`` (so ``--resume`` continues from the last completed stage, and the
interrupted stage continues from its own checkpoints). This module sits above every package and
is the only place that wires the supernet-backed evaluator into the search engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import PipelineConfig
from pipeline.console import announce, current_level, progress_reporter
from pipeline.errors import ConfigError, PipelineError
from pipeline.failures import StageFailed
from pipeline.run_dir import RunDir
from pipeline.space.base import Architecture

if TYPE_CHECKING:
    from pipeline.train.progress import Progress

STAGES: tuple[str, ...] = ("train", "search", "generate", "finetune", "report")
_log = logging.getLogger(__name__)


def _progress() -> Progress:
    """The console's progress for training and fine-tuning: a bar on a terminal, plain lines otherwise."""
    from pipeline.train.progress import Progress

    return Progress(progress_reporter, verbose=current_level() == "verbose")


def run_train_stage(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train the supernet (Ray Train) into ``run_dir/supernet``."""
    from pipeline.train import train_supernet

    return train_supernet(config, run_dir, resume=resume, progress=_progress())


def run_search_stage(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """NATv2 on the trained supernet, through evaluator/latency actors and the archive actor."""
    from pipeline.cream_answer import evaluate_cream_answer
    from pipeline.evaluate.actors import check_actor_resources
    from pipeline.evaluate.objectives import ofav2_objectives
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator
    from pipeline.search.archive import ArchiveActorSink, start_archive
    from pipeline.search.driver import run_search
    from pipeline.search.natv2 import NATv2Settings

    if config.search.space != "ofav2":
        raise ConfigError("the pipeline searches the ofav2 supernet; set search.space: ofav2 "
                          "(use jobs/search.py --space natsbench for the benchmark table)")
    objectives = ofav2_objectives(config)
    check_actor_resources(config.evaluate)
    settings = NATv2Settings.from_config(config.search)
    metadata = config.model_dump(mode="json")
    handle = start_archive(run_dir, config.run.name, "ofav2", objectives, config=metadata,
                           name=f"archive-{config.run.name}")
    sink = ArchiveActorSink(handle)
    with OFAv2ActorEvaluator(config, run_dir, archive=handle) as evaluator:
        result = run_search(
            evaluator, objectives, settings, run_dir, seed=config.run.seed, run_id=config.run.name,
            resume=resume, metadata=metadata, sink=sink, latency_predictors=evaluator.latency_predictors(objectives),
            adapt=_adaptation(config, run_dir), log=_log.info, rows_per_write=config.evaluate.archive_batch_size,
        )
        evaluate_cream_answer(evaluator, sink, run_dir, run_id=config.run.name)  # a Cream-trained run's answer
    sink.close()  # fold the archive's append log into archive.parquet for the stages and readers after
    last = result.history[-1] if result.history else {}
    return {"evaluations": result.evaluations, "hypervolume": last.get("hypervolume")}


def _adaptation(config: PipelineConfig, run_dir: Path) -> Callable[[list[Architecture]], None] | None:
    """The search's adaptation callback (fine-tune the supernet on the current front), if enabled."""
    if not config.search.adaptation.enabled:
        return None
    from pipeline.train.adapt import adapt_supernet

    return lambda archs: adapt_supernet(config, run_dir, archs, log=_log.info)


def run_generate_stage(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """PNAG fitted on the archive (``RUN_DIR/generator/``), its answers measured on the actors."""
    from pipeline.evaluate.actors import check_actor_resources
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator, open_run_for_generation
    from pipeline.generate.run_stage import generate_stage

    space, exact_costs = open_run_for_generation(run_dir)
    check_actor_resources(config.evaluate)
    with OFAv2ActorEvaluator(config, run_dir, run_id=config.run.name) as evaluator:
        return generate_stage(config, RunDir(run_dir), space, exact_costs, evaluator, log=_log.info)


def run_finetune_stage(config: PipelineConfig, run_dir: Path, resume: bool = False,
                       archs: Sequence[Architecture] | None = None) -> dict[str, Any]:
    """Ray Tune trials fine-tuning the chosen subnets; deploy bundles to ``models/``, ``finetuned.parquet``."""
    from pipeline.deploy_bundle import deploy  # the subnet's bundle: fp32 and INT8 models, card.json
    from pipeline.finetune_choices import finetune_choices
    from pipeline.train.finetune import finetune_run
    frame = finetune_run(config, run_dir, resume=resume, archs=archs, progress=_progress(), deploy=deploy,
                         choose=lambda space: finetune_choices(config.finetune, Path(run_dir), space))
    ok = frame[frame["status"] == "ok"]
    _log.info(f"finetune: {len(ok)}/{len(frame)} subnets fine-tuned and exported to {RunDir(run_dir).models_dir}")
    return {"finetuned": len(ok), "failed": int((frame["status"] != "ok").sum())}


def run_report_stage(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Plots of every stage's results into ``plots/`` and the one-page ``report.html``."""
    from pipeline.report import write_report

    page = write_report(run_dir)
    _log.info(f"report: {page}")
    return {"report": str(page)}


STAGE_FUNCTIONS: dict[str, Callable[[PipelineConfig, Path, bool], dict[str, Any]]] = dict(zip(
    STAGES, (run_train_stage, run_search_stage, run_generate_stage, run_finetune_stage, run_report_stage), strict=True))


def check_stages(stages: Sequence[str]) -> None:
    """One ``ConfigError`` naming any stage that does not exist."""
    unknown = [s for s in stages if s not in STAGE_FUNCTIONS]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")


def run_pipeline(config: PipelineConfig, run_dir: Path, resume: bool = False,
                 stages: Sequence[str] = STAGES) -> dict[str, dict[str, Any]]:
    """Run ``stages`` in order, skipping those already completed; return each stage's summary."""
    check_stages(stages)
    done = RunDir(run_dir).completed_stages() if resume else []
    summaries: dict[str, dict[str, Any]] = {}
    for index, stage in enumerate(stages, start=1):
        if stage in done:
            announce(f"[{index}/{len(stages)}] {stage}: already completed, skipped")
            continue
        announce(f"[{index}/{len(stages)}] {stage} ...")
        try:
            summaries[stage] = STAGE_FUNCTIONS[stage](config, run_dir, resume)
        except PipelineError:
            raise
        except Exception as exc:  # a failure inside Ray or a bug: named by its stage (pipeline.failures)
            raise StageFailed(stage, exc) from exc
        RunDir(run_dir).mark_completed(stage, **{k: v for k, v in summaries[stage].items() if v is not None})
    return summaries
