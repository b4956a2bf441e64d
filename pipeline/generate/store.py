"""The saved generator: a ``generator/`` directory that loads without the evaluator.

```
generator/
  manifest.json       format, space (name and options), budget metrics, budget scale, the
                      settings, accuracy standardisation, how it was fitted, file list
  policy.pt           the LSTM policy's state dict
  ranker.pt           the Pareto-aware ranker's state dict
  predictors.joblib   the accuracy predictor (LightGBM ensemble), the Gaussian-process bound and
                      the log-cost regressors
```

The directory is written next to its final place and renamed into it, so a reader sees either the
old generator or the new one, never half of one. A missing or foreign directory is one
``CheckpointError`` line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch

from pipeline.config import GenerateConfig
from pipeline.errors import CheckpointError
from pipeline.generate.budget import BudgetScale
from pipeline.generate.fitted import RANKER_HIDDEN, FittedGenerator
from pipeline.generate.policy import ArchGenerator
from pipeline.generate.predictors import CostModel, ExactCostFn, GeneFeatures
from pipeline.generate.ranker import RankingMLP
from pipeline.schema import utc_now
from pipeline.space import get_space

FORMAT = "pnag-generator/1"
MANIFEST = "manifest.json"
FILES = {"policy": "policy.pt", "ranker": "ranker.pt", "predictors": "predictors.joblib"}


def manifest_of(generator: FittedGenerator) -> dict[str, Any]:
    options = generator.space.options() if hasattr(generator.space, "options") else {}
    return {
        "format": FORMAT,
        "saved_at": utc_now(),
        "space": {"name": generator.space.name, "options": options},
        "budget_metrics": list(generator.metrics),
        "budget_scale": {"low": generator.scale.low.tolist(), "high": generator.scale.high.tolist()},
        "exact_metrics_at_fit": list(generator.exact_metrics),
        "cost_models": sorted(generator.cost_model.regressors),
        "accuracy": {"center": generator.accuracy_center, "scale": generator.accuracy_scale},
        "ranker_hidden": RANKER_HIDDEN,
        "settings": generator.settings.model_dump(mode="json"),
        "fit": generator.fit_info,
        "files": FILES,
    }


def save_generator(generator: FittedGenerator, directory: str | Path) -> Path:
    """Write ``directory`` (replacing a previous generator there as one rename)."""
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    torch.save(generator.policy.state_dict(), partial / FILES["policy"])
    torch.save(generator.ranker.state_dict(), partial / FILES["ranker"])
    joblib.dump({"accuracy": generator.predictor, "bound": generator.bound, "costs": generator.cost_model.regressors}, partial / FILES["predictors"])
    (partial / MANIFEST).write_text(json.dumps(manifest_of(generator), indent=2, default=float))
    if directory.exists():
        previous = directory.with_name(directory.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        directory.rename(previous)
        partial.rename(directory)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        partial.rename(directory)
    return directory


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a saved generator ({MANIFEST} is missing); fit one first")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable ({type(exc).__name__})") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    return manifest


#: settings a generator saved before they left the ``generate`` section carries; none changes an
#: answer except ``rank_by: ranker``, which no longer exists
RETIRED_SETTINGS = {"rank_by": "predicted_top1", "verify": None, "explore_fraction": None}


def _settings(saved: dict[str, Any], directory: Path) -> GenerateConfig:
    """The saved ``generate`` settings; retired ones are dropped, unless they changed the answers."""
    saved = dict(saved)
    for name, kept_value in RETIRED_SETTINGS.items():
        value = saved.pop(name, kept_value)
        if kept_value is not None and value != kept_value:
            raise CheckpointError(f"{directory}: saved with generate.{name}={value!r}, which this version "
                                  "no longer supports; fit the generator again")
    return GenerateConfig(**saved)


def load_generator(directory: str | Path, exact_cost_fn: ExactCostFn | None = None,
                   check_cost_fn: ExactCostFn | None = None) -> FittedGenerator:
    """The saved generator, answering with ``exact_cost_fn``/``check_cost_fn`` where given."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    missing = [name for name in FILES.values() if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: saved generator lacks {', '.join(missing)}")
    space = get_space(manifest["space"]["name"], **manifest["space"]["options"])
    settings = _settings(manifest["settings"], directory)
    metrics = tuple(manifest["budget_metrics"])
    scale = BudgetScale(metrics, np.asarray(manifest["budget_scale"]["low"]), np.asarray(manifest["budget_scale"]["high"]))
    features = GeneFeatures(space)
    policy = ArchGenerator(features.cardinalities, len(metrics), settings.hidden_size)
    policy.load_state_dict(torch.load(directory / FILES["policy"], weights_only=True))
    ranker = RankingMLP(features.width + len(metrics) + 1, len(metrics), manifest["ranker_hidden"])
    ranker.load_state_dict(torch.load(directory / FILES["ranker"], weights_only=True))
    predictors = joblib.load(directory / FILES["predictors"])
    return FittedGenerator(
        space=space, settings=settings, scale=scale, policy=policy, ranker=ranker, predictor=predictors["accuracy"],
        bound=predictors.get("bound"), cost_model=CostModel.offered_by(space, metrics, exact_cost_fn, predictors["costs"]),
        accuracy_center=float(manifest["accuracy"]["center"]), accuracy_scale=float(manifest["accuracy"]["scale"]),
        fit_info=dict(manifest.get("fit", {})), check_cost_fn=check_cost_fn,
    )
