"""The import and export jobs' work: an OFA supernet file into a run directory, and back out.

``import_ofa_run`` reads an OFA MobileNetV3 supernet file (``pipeline.supernet.ofa_format``),
checks it against every ``supernet`` value the user stated, and only then writes the run
directory: ``config.yaml`` (its ``supernet`` section describes the file: OFA's variant, OFA's
ImageNet resolutions unless stated), ``supernet/supernet.pt`` and the train stage marked as done,
so ``run_pipeline --resume --stages search,generate,finetune`` continues on it. Bad input raises
before anything is written.

``export_ofa`` writes an ``SE_B`` supernet (a run's, or a checkpoint file's) as OFA publishes its
files, ``{"state_dict": ...}`` in ``OFAMobileNetV3``'s key layout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from pipeline.atomic import atomic_path
from pipeline.config import PipelineConfig, SupernetConfig, parse_overrides
from pipeline.errors import CheckpointError
from pipeline.run_dir import RunDir
from pipeline.runtime import open_run
from pipeline.supernet.checkpoint import load_supernet, save_supernet
from pipeline.supernet.ofa_format import OFA_RESOLUTIONS, OFA_STAGE_WIDTHS, import_ofa_file, ofa_state_dict

_INFERRED = ("width_mult", "kernel_choices", "expand_choices", "depth_choices")
_OFA_VARIANT = ("early_exits", "dense_skips", "parallel_blocks")


def stated_supernet_values(config_file: str | Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The ``supernet`` values the user wrote (in the config file or as ``--set supernet.KEY=...``)."""
    stated: dict[str, Any] = {}
    if config_file is not None and Path(config_file).is_file():
        tree = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        section = tree.get("supernet") if isinstance(tree, dict) else None
        stated.update(section if isinstance(section, dict) else {})
    for key, value in parse_overrides(list(overrides)):
        if key.startswith("supernet."):
            stated[key.split(".", 1)[1]] = value
    return stated


def import_ofa_run(ofa_file: str | Path, config: PipelineConfig, stated: Mapping[str, Any], run_dir: RunDir,
                   resume: bool) -> dict[str, Any]:
    """Import ``ofa_file`` into ``run_dir`` (see the module docstring); returns a summary."""
    run_dir = run_dir.check(resume)
    for key in _OFA_VARIANT:
        if stated.get(key):
            raise CheckpointError(f"supernet.{key}: an OFA supernet has none; import it as it is, then grow OFAv2 "
                                  "on it with train.init_from")
    if "stage_widths" in stated and list(stated["stage_widths"]) != list(OFA_STAGE_WIDTHS):
        raise CheckpointError(f"supernet.stage_widths {stated['stage_widths']}: an OFA MobileNetV3 supernet has "
                              f"{list(OFA_STAGE_WIDTHS)} (scaled by width_mult)")
    requested = {key: stated[key] for key in _INFERRED if key in stated}
    if "width_mult" in requested:
        requested["width_mult"] = float(requested["width_mult"])
    for key in ("kernel_choices", "expand_choices", "depth_choices"):
        if key in requested:
            requested[key] = tuple(sorted(int(v) for v in requested[key]))
    resolutions = tuple(config.supernet.resolutions) if "resolutions" in stated else OFA_RESOLUTIONS
    started = time.perf_counter()
    net, layout = import_ofa_file(ofa_file, requested, resolutions, config.supernet.dropout)
    seconds = time.perf_counter() - started
    section = SupernetConfig(**layout.space_options(resolutions), dropout=config.supernet.dropout)
    config = config.model_copy(update={"supernet": section})
    config, run_dir = open_run(run_dir, config, resume)  # from here on the directory is written
    source = str(Path(ofa_file).resolve())
    save_supernet(run_dir.supernet, net, extra={"imported_from": source, "format": "ofa"})
    run_dir.mark_completed("train", imported_from=source)
    return {
        "supernet": str(run_dir.supernet), "variant": net.space.variant_name, "width_mult": layout.width_mult,
        "num_classes": layout.num_classes, "parameters": sum(p.numel() for p in net.parameters()),
        "kernel_choices": list(layout.kernel_choices), "expand_choices": list(layout.expand_choices),
        "depth_choices": list(layout.depth_choices), "resolutions": list(resolutions),
        "sources": layout.sources, "import_seconds": seconds, "run_dir": str(run_dir),
    }


def export_ofa(source: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the supernet of a run directory (or a checkpoint file) to ``out`` in OFA's format."""
    source = Path(source)
    checkpoint = RunDir(source).supernet if source.is_dir() else source
    net, _ = load_supernet(checkpoint)
    state = ofa_state_dict(net)  # refuses a supernet with exits or parallel branches
    out = Path(out)
    if out.is_dir():
        raise CheckpointError(f"--out {out} is a directory; name the file to write")
    with atomic_path(out) as tmp:
        torch.save({"state_dict": state}, tmp)
    return {"out": str(out), "tensors": len(state), "width_mult": net.space.width_mult,
            "num_classes": net.num_classes}
