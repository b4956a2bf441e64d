"""Validated configuration: YAML in, typed pydantic objects out.

One ``PipelineConfig`` holds a section per stage. Every section forbids unknown keys, so a typo
is an error that names the key. ``load_config`` applies ``--set key.path=value`` overrides
(values parsed as YAML) and turns any validation failure into a one-line ``ConfigError``.
This module imports nothing else from ``pipeline`` except the error types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import ConfigError


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    name: str = "run"
    seed: int = Field(0, ge=0)


class RayConfig(Section):
    """How the driver reaches Ray. ``num_cpus`` is used only when it starts a local Ray."""

    num_cpus: int | None = Field(None, ge=1)
    namespace: str = "nas"


class DataConfig(Section):
    dataset: Literal["digits", "synthetic", "cifar10", "cifar100", "tinyimagenet", "folder"] = "digits"
    path: str | None = None
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    batch_size: int = Field(64, ge=1)
    # synthetic data only
    synthetic_classes: int = Field(10, ge=2)
    synthetic_images: int = Field(512, ge=8)


class SupernetConfig(Section):
    """The supernet variant: the three OFAv2 switches, width and the allowed choices."""

    early_exits: bool = True
    dense_skips: bool = True
    parallel_blocks: bool = False
    width_mult: float = Field(1.0, gt=0.0)
    kernel_choices: list[int] = [3, 5, 7]
    expand_choices: list[int] = [3, 4, 6]
    depth_choices: list[int] = [2, 3, 4]
    resolutions: list[int] = [24, 28, 32]
    stage_widths: list[int] = [24, 40, 80, 112, 160]
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @field_validator("kernel_choices", "expand_choices", "depth_choices", "resolutions")
    @classmethod
    def _non_empty_positive(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 1:
            raise ValueError("must be a non-empty list of positive integers")
        return sorted(set(value))


class PipelineConfig(Section):
    """The whole pipeline's configuration; each stage reads its own section."""

    run: RunConfig = RunConfig()
    ray: RayConfig = RayConfig()
    data: DataConfig = DataConfig()
    supernet: SupernetConfig = SupernetConfig()
    # Stage sections (train, evaluate, search, generate, finetune) are added by their packages'
    # config models below as they are built.
    train: dict[str, Any] = {}
    evaluate: dict[str, Any] = {}
    search: dict[str, Any] = {}
    generate: dict[str, Any] = {}
    finetune: dict[str, Any] = {}


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key.path=value`` strings; values are read as YAML scalars or lists."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
        parsed.append((key.strip(), value))
    return parsed


def format_validation_error(error: ValidationError) -> str:
    """One line naming the first offending key and why."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(root)"
    if first["type"] == "extra_forbidden":
        return f"config: unknown key '{location}'"
    return f"config: '{location}': {first['msg']} (got {first.get('input')!r})"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load YAML (or defaults when ``path`` is None), apply overrides, validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path}{where} is not valid YAML") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        tree = loaded or {}
    for key, value in parse_overrides(overrides or []):
        _set_path(tree, key, value)
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def dump_config(config: PipelineConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    tmp.replace(path)
