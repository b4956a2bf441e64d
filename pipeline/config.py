"""Validated configuration: YAML in, typed pydantic objects out.

One ``PipelineConfig`` holds a section per stage. Every section forbids unknown keys, so a typo
is an error that names the key. ``load_config`` applies ``--set key.path=value`` overrides
(values parsed as YAML) and turns any validation failure into a one-line ``ConfigError``.
This module imports nothing else from ``pipeline`` except the error types and the leaf
``quantize`` (which providers run INT8).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.atomic import write_text_atomic
from pipeline.errors import ConfigError
from pipeline.quantize import FP16_PROVIDERS, INT8_PROVIDERS

#: the data sets ``pipeline.data`` can load (the one list of their names)
DatasetName = Literal["digits", "synthetic", "cifar10", "cifar100", "tinyimagenet", "folder", "imagenet"]
#: the data sets that can be streamed from files instead of held in memory
STREAMABLE_DATASETS = ("folder", "imagenet")
#: forward-pass precisions (``pipeline.supernet.precision``): fp32, or autocast to bf16/fp16
Precision = Literal["fp32", "bf16", "fp16"]
#: the numeric format a hardware profile deploys a subnet in (its latency and ``top1@<profile>``)
ProfilePrecision = Literal["fp32", "int8", "fp16"]

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
    dataset: DatasetName = "digits"
    path: str | None = None
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    batch_size: int = Field(64, ge=1)
    # synthetic data only
    synthetic_classes: int = Field(10, ge=2)
    synthetic_images: int = Field(512, ge=8)
    # folder and imagenet data only: the side length (pixels) images are decoded to (shorter side
    # resized, centre crop); training crops and evaluation resolutions are taken from it
    image_size: int = Field(32, ge=8, le=1024)
    stream: Literal["auto", "on", "off"] = Field("auto", description=(
        "decode image files on the fly instead of holding the data set in memory: auto streams "
        "imagenet always and folder when its decoded size exceeds memory_budget_mb; the other "
        "data sets are always in memory"))
    memory_budget_mb: float = Field(4096.0, gt=0.0, description=(
        "decoded size above which stream: auto streams a folder data set"))
    loader_workers: int | None = Field(None, ge=0, description=(
        "DataLoader decode processes of streamed data per consumer (0: decode in the consumer's "
        "process); None: its torch thread budget, 1 to 8"))
    loader: Literal["torch", "ray_data"] = Field("torch", description=(
        "how streamed batches are decoded: torch DataLoader workers on the consumer's node, or "
        "ray_data tasks that may run on any node of the Ray cluster (CPU-only nodes beside a GPU "
        "trainer); needs Ray running"))
    ray_data_cpus_per_task: float = Field(1.0, gt=0.0, description=(
        "CPUs each ray_data decode task (one training batch) requests"))

    @model_validator(mode="after")
    def _streamable(self) -> DataConfig:
        if self.stream == "on" and self.dataset not in STREAMABLE_DATASETS:
            raise ValueError(f"stream: on needs a data set that is read from files "
                             f"({', '.join(STREAMABLE_DATASETS)}), not {self.dataset}")
        return self


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


PhaseName = Literal["full", "kernel", "level", "height", "depth", "expand"]
#: the NATv2 surrogates a config may name (``pipeline.search.surrogates`` builds them; its
#: experimental ones are reachable only through the benchmark's variants)
SurrogateName = Literal["lgbm", "rf", "extra_trees", "dtree", "gp", "rbf", "mlp", "ridge"]
#: named surrogate sets for ``search.surrogates`` (``nat``: NAT's adaptive switching)
SURROGATE_PRESETS: dict[str, tuple[str, ...]] = {"nat": ("rbf", "gp", "mlp", "dtree")}
TRAIN_PHASES: tuple[str, ...] = get_args(PhaseName)


class PhasePart(Section):
    """One part of a progressive-shrinking phase.

    ``choices`` are the allowed values of the phase's elastic dimension (kernel sizes, number of
    active branches, exits, depths or expand ratios); ``None`` means every value of the space.
    ``epochs`` and ``warmup_epochs`` may be fractional; ``train.epochs_scale`` multiplies both.
    ``lr`` is per worker at batch 64 (scaled linearly with the global batch, see ``lr_scaling``).
    """

    epochs: float = Field(gt=0.0)
    lr: float = Field(gt=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    subnets_per_step: int = Field(1, ge=1)
    choices: list[int] | None = None


class TrainPhase(Section):
    """A phase of progressive shrinking: its name and its parts, in order."""

    name: PhaseName
    parts: list[PhasePart] = Field(min_length=1)


def default_train_phases() -> list[TrainPhase]:
    """The OFAv2 phase order and numbers (docs/methods.md, "Training"), before ``epochs_scale``."""

    def phase(name: str, *parts: tuple[float, float, float, int, list[int] | None]) -> TrainPhase:
        return TrainPhase(name=name, parts=[
            PhasePart(epochs=e, lr=lr, warmup_epochs=w, subnets_per_step=k, choices=c)
            for e, lr, w, k, c in parts
        ])

    return [
        phase("full", (180, 0.1, 5, 1, None)),
        phase("kernel", (120, 3e-2, 5, 1, None)),
        phase("level", (25, 2.5e-3, 0, 2, [2, 3]), (120, 7.5e-3, 0, 2, None)),
        phase("height", (25, 1.875e-3, 0, 2, [4, 5]), (60, 3.75e-3, 0, 2, [3, 4, 5]),
              (90, 7.5e-3, 0, 2, [2, 3, 4, 5]), (120, 1.5e-2, 0, 2, None)),
        phase("depth", (25, 2.5e-3, 0, 2, [3, 4]), (120, 7.5e-3, 0, 2, None)),
        phase("expand", (25, 2.5e-3, 0, 4, [4, 6]), (120, 7.5e-3, 0, 4, None)),
    ]


class CreamConfig(Section):
    """Cream of the Crop's prioritized-path board and meta network (``distillation: cream``)."""

    board_size: int = Field(10, ge=1)
    warmup_epochs: float = Field(20.0, ge=0.0)  # scaled by train.epochs_scale
    accuracy_margin: float = Field(5.0, ge=0.0)  # top-1 points
    held_out_images: int = Field(128, ge=8)  # carved out of the training split (never validation)
    stored_images: int = Field(32, ge=1)
    meta_hidden: int = Field(64, ge=1)
    meta_lr: float = Field(1e-3, gt=0.0)
    meta_update_interval: int = Field(20, ge=1)
    sampling_mix: float = Field(0.5, ge=0.0, le=1.0)


class TrainConfig(Section):
    """Supernet training (Ray Train): phases, optimiser, distillation, workers, checkpoints."""

    phases: list[TrainPhase] = Field(default_factory=default_train_phases)
    epochs_scale: float = Field(1.0, gt=0.0)
    steps_per_epoch: int | None = Field(None, ge=1)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    lr_scaling: Literal["linear", "none"] = "linear"
    distillation: Literal["none", "fixed", "dynamic", "cream"] = "dynamic"
    ens_kd: bool = True
    kd_weight: float = Field(1.0, ge=0.0)
    exit_weights: list[float] = [0.06, 0.13, 0.20, 0.27, 0.34]
    cream: CreamConfig = CreamConfig()
    num_workers: int = Field(1, ge=0)
    use_gpu: bool = False
    precision: Precision = Field("fp32", description=(
        "autocast of the forward passes of training, adaptation and fine-tuning (loss and BN "
        "recalibration stay fp32); fp16 (with a gradient scaler) needs use_gpu"))
    threads_per_worker: int | None = Field(None, ge=1)
    max_failures: int = Field(2, ge=0)
    eval_subnets: int = Field(3, ge=0)
    eval_interval: int = Field(1, ge=1)  # epochs between evaluations (always at a part's end)
    eval_images: int | None = Field(None, ge=1)
    calibration_images: int = Field(500, ge=1)
    calibration_batch_size: int = Field(100, ge=1)
    #: a supernet checkpoint whose tensors (matched by name and shape) initialise this supernet;
    #: the phases may then start after 'full', and the dimensions of unlisted phases are elastic
    init_from: str | None = None

    @field_validator("phases")
    @classmethod
    def _phase_order(cls, phases: list[TrainPhase]) -> list[TrainPhase]:
        names = [phase.name for phase in phases]
        order = [name for name in TRAIN_PHASES if name in names]
        if names != order:
            raise ValueError(f"phases must be unique and in the order {'/'.join(TRAIN_PHASES)}")
        return phases

    @model_validator(mode="after")
    def _full_unless_initialised(self) -> TrainConfig:
        if self.init_from is None and "full" not in [phase.name for phase in self.phases]:
            raise ValueError("phases: the 'full' phase is required (unless train.init_from names a supernet)")
        return self

    @field_validator("precision")
    @classmethod
    def _fp16_needs_gpu(cls, value: str, info: Any) -> str:
        if value == "fp16" and not info.data.get("use_gpu"):
            raise ValueError("fp16 needs use_gpu: true (torch has no fast float16 arithmetic on CPUs); use bf16 on CPU")
        return value

    @field_validator("exit_weights")
    @classmethod
    def _five_weights(cls, value: list[float]) -> list[float]:
        if len(value) != 5 or min(value) < 0 or sum(value) <= 0:
            raise ValueError("must be five non-negative weights with a positive sum")
        return value


class ProfilePlacement(Section):
    """Where a hardware profile's latency actors run: Ray node labels and/or custom resources.

    ``labels`` become the actor's ``label_selector`` (every key must match the node's label);
    ``resources`` are requested as custom resources (a small share such as 0.01 pins an actor to
    nodes that advertise the resource without using it up). Both empty: any node.
    """

    labels: dict[str, str] = {}
    resources: dict[str, float] = {}

    @field_validator("resources")
    @classmethod
    def _positive_resources(cls, value: dict[str, float]) -> dict[str, float]:
        if any(amount <= 0 for amount in value.values()):
            raise ValueError("resource amounts must be positive")
        return value


class HardwareProfile(Section):
    """One kind of hardware: where latency is measured and how (ONNX Runtime settings)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    placement: ProfilePlacement = ProfilePlacement()
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    # the model the profile times and (int8, fp16) whose accuracy is measured as top1@<name>: fp32 as
    # exported; int8: ONNX Runtime static QDQ quantisation (pipeline.quantize), cpu or tensorrt only;
    # fp16: float16 weights and operators, cuda or tensorrt only
    precision: ProfilePrecision = "fp32"
    # int8: how many seeded training images calibrate the activation ranges (evaluate.calibration_seed)
    calibration_images: int = Field(64, ge=1)
    threads: int | None = Field(None, ge=1)  # intra-op threads; None = every core of the node
    batch_size: int = Field(1, ge=1)
    resolution: int | None = Field(None, ge=8)  # None = the architecture's own resolution
    optimization_level: Literal["disable", "basic", "extended", "all"] = "all"  # ONNX Runtime graph optimisation
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    allow_spinning: bool = True  # session.intra_op.allow_spinning (ONNX Runtime's default, made explicit)
    # wall: elapsed time of each run; thread_cpu: the CPU time of the thread that runs it, which
    # leaves out time the OS gave to other processes (one intra-op thread on the CPU provider only)
    timer: Literal["wall", "thread_cpu"] = "wall"
    warmup: int = Field(10, ge=0)
    repeats: int = Field(50, ge=3)  # timed runs at least; more until the median is stable
    max_repeats: int = Field(1000, ge=3)  # the cap of the stopping rule
    target_rse: float = Field(0.01, gt=0.0, lt=1.0)  # stop when the median's relative standard error is below
    # time a fixed reference model after every block of runs and scale the figures to the machine's
    # speed when the actor started: cancels spells of a slower machine (a shared or throttled
    # host) at about twice the timing cost
    speed_reference: bool = False
    num_actors: int = Field(1, ge=1)
    num_cpus: float = Field(1.0, ge=0.0)  # CPUs each latency actor reserves
    num_gpus: float = Field(0.0, ge=0.0)

    @field_validator("precision")
    @classmethod
    def _precision_on_its_providers(cls, value: str, info: Any) -> str:
        name, provider = info.data.get("name"), info.data.get("provider")
        if value == "int8" and provider not in INT8_PROVIDERS:
            raise ValueError(
                f"profile {name!r}: int8 needs provider {' or '.join(INT8_PROVIDERS)}, not {provider!r} "
                "(the CUDA provider has no INT8 convolution: it would run the model dequantised)")
        if value == "fp16" and provider not in FP16_PROVIDERS:
            raise ValueError(
                f"profile {name!r}: fp16 needs provider {' or '.join(FP16_PROVIDERS)}, not {provider!r} "
                "(the CPU provider has no fast float16 kernels)")
        return value

    @field_validator("name")
    @classmethod
    def _not_an_exit_name(cls, value: str) -> str:
        if re.fullmatch(r"exit\d+", value):
            raise ValueError(f"{value!r} is reserved: top1@{value} is the accuracy of an early exit")
        return value

    @field_validator("timer")
    @classmethod
    def _thread_timer_needs_one_cpu_thread(cls, value: str, info: Any) -> str:
        if value == "thread_cpu" and (info.data.get("threads") != 1 or info.data.get("provider") != "cpu"):
            raise ValueError("timer 'thread_cpu' needs threads: 1 and provider: cpu (the run must stay on the timing thread)")
        return value


def default_hardware_profiles() -> list[HardwareProfile]:
    """The local stand-in for heterogeneous nodes: every core against one thread."""
    return [
        HardwareProfile(name="local_all_threads", threads=None),
        HardwareProfile(name="local_one_thread", threads=1),
    ]


class EvaluateConfig(Section):
    """Evaluator actors (accuracy), latency actors (one pool per hardware profile) and dispatch."""

    num_evaluators: int = Field(2, ge=1)
    evaluator_num_cpus: float = Field(1.0, ge=0.0)
    # "spread": one evaluator per node where the cluster allows (Ray's SPREAD strategy);
    # "default": Ray's default placement, which fills a node before the next
    evaluator_placement: Literal["default", "spread"] = "default"
    threads_per_evaluator: int = Field(1, ge=1)
    checkpoint: str | None = None  # default: RUN_DIR/supernet/supernet.pt
    calibration_images: int = Field(2000, ge=1)
    calibration_batch_size: int = Field(256, ge=1)
    calibration_seed: int = Field(0, ge=0)
    eval_batch_size: int = Field(512, ge=1)
    precision: Precision = Field("fp32", description=(
        "autocast of the evaluator actors' top-1 passes (BN recalibration stays fp32); "
        "fp16 is refused: the actors run on CPUs"))
    val_images: int | None = Field(None, ge=1)  # None = the whole validation split (10,000 seeded when streamed)
    cache_mb: float = Field(2048.0, ge=0.0, description=(
        "streamed data: an evaluator decodes its calibration and validation subsets once and keeps "
        "them when they fit in this many MiB, else it re-streams them for every candidate"))
    candidate_timeout_s: float = Field(600.0, gt=0.0)
    max_retries: int = Field(2, ge=0)
    archive_batch_size: int = Field(8, ge=1)  # results streamed to the archive per upsert
    onnx_cache: str | None = None  # default: RUN_DIR/onnx_cache
    profiles: list[HardwareProfile] = Field(default_factory=default_hardware_profiles)

    @field_validator("profiles")
    @classmethod
    def _unique_profile_names(cls, profiles: list[HardwareProfile]) -> list[HardwareProfile]:
        names = [profile.name for profile in profiles]
        if len(set(names)) != len(names):
            raise ValueError("profile names must be unique")
        return profiles

    @field_validator("precision")
    @classmethod
    def _no_fp16_on_cpu(cls, value: str) -> str:
        if value == "fp16":
            raise ValueError("fp16 is for CUDA and the evaluator actors run on CPUs (torch has no fast "
                             "float16 arithmetic there); use bf16")
        return value


class FinetuneConfig(Section):
    """Post-processing fine-tuning (NATv2): one Ray Tune trial per chosen architecture.

    Stage 1 trains on the training split with early stopping on validation loss; stage 2
    retrains from the same starting weights on train + validation for the best epoch count and
    reports test accuracy. ``source`` picks the architectures: the final front, the generator's
    picks, or ``archs`` (architecture JSON texts) given explicitly.
    """

    source: Literal["front", "high_tradeoff", "generated", "explicit"] = "front"
    archs: list[str] = []
    max_archs: int = Field(4, ge=1)
    max_epochs: int = Field(150, ge=1)
    patience: int = Field(30, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    weight_decay: float = Field(1e-4, ge=0.0)
    batch_size: int = Field(64, ge=1)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    joint_exits: bool = True
    use_gpu: bool = False
    cpus_per_trial: float = Field(1.0, gt=0.0)
    max_concurrent_trials: int | None = Field(None, ge=1)
    export_batch_size: int = Field(1, ge=1)


class ObjectiveSpec(Section):
    """One search objective: a metric name and whether it is minimised or maximised."""

    name: str
    direction: Literal["min", "max"]


class AdaptationConfig(Section):
    """NAT supernet adaptation between search iterations (``ofav2`` only)."""

    enabled: bool = False
    epochs: int = Field(1, ge=1)
    archs_sampled: int = Field(150, ge=1)  # the archive's best (by non-dominated rank) to train on
    subnets_per_step: int = Field(2, ge=1)
    lr: float = Field(2.5e-3, gt=0)  # per 64 images, scaled like training's learning rates
    steps_per_epoch: int | None = Field(None, ge=1)  # None: one pass over the training split
    num_workers: int = Field(0, ge=0)  # Ray Train workers; 0 runs in the driver's process


class SearchConfig(Section):
    """NATv2 search. The defaults are the engine's tuned defaults (``jobs/bench_search.py``).

    This section is the one declaration of the engine's settings: ``NATv2Settings``
    (``pipeline.search.settings``) is generated from its keys. Options measured no better than
    these defaults are not keys; they are the benchmark's variants (``pipeline.bench.search``).
    """

    space: Literal["ofav2", "natsbench"] = "ofav2"
    table: str | None = None  # natsbench only: the NATS-Bench-format CSV
    objectives: list[ObjectiveSpec] = [
        ObjectiveSpec(name="top1", direction="max"), ObjectiveSpec(name="params_m", direction="min"),
    ]
    max_evaluations: int = Field(300, ge=1)
    iterations: int | None = Field(None, ge=1)  # None: until max_evaluations
    archive_size: int = Field(300, ge=2)
    initial_size: int | None = Field(None, ge=2)  # None: initial_fraction x max_evaluations
    initial_fraction: float = Field(0.2, gt=0.0, le=1.0)
    min_initial_size: int = Field(10, ge=2)
    initial_factor: float = Field(1.0, ge=1.0)  # pre-processing: evaluate factor x initial size
    candidates_per_iteration: int | None = Field(None, ge=1)  # None: max_evaluations / target_iterations in [5, 25]
    target_iterations: int = Field(30, ge=1)
    surrogates: list[SurrogateName] = Field(
        ["lgbm", "gp", "ridge"], min_length=1
    )
    cv_folds: int = Field(5, ge=2)
    surrogate_population: int = Field(100, ge=4)
    surrogate_generations: int = Field(20, ge=1)
    #: ``natv2``: K picks by non-dominated rank over archive and candidates, spread over every
    #: objective; ``nat``: NAT's rule, the surrogate front spread along the cheap objectives only;
    #: ``hvi``: K picks one by one for the largest predicted hypervolume gain over the archive's front
    subset_selection: Literal["natv2", "nat", "hvi"] = "natv2"
    adaptation: AdaptationConfig = AdaptationConfig()

    @model_validator(mode="before")
    @classmethod
    def _surrogate_preset(cls, values: Any) -> Any:
        """``surrogates: nat`` is NAT's adaptive switching set (RBF, GP, MLP, decision tree), 10 folds."""
        preset = values.get("surrogates") if isinstance(values, dict) else None
        if isinstance(preset, str) and preset in SURROGATE_PRESETS:
            values = dict(values)
            values["surrogates"] = list(SURROGATE_PRESETS[values["surrogates"]])
            values.setdefault("cv_folds", 10)
        return values

    @field_validator("objectives", mode="before")
    @classmethod
    def _parse_objectives(cls, value: Any) -> Any:
        """Accept ``"top1:max"`` strings beside ``{name, direction}`` mappings."""
        if not isinstance(value, list):
            return value
        parsed = []
        for item in value:
            if isinstance(item, str):
                name, sep, direction = item.rpartition(":")
                if not sep or not name:
                    raise ValueError(f"objective {item!r} must look like 'name:min' or 'name:max'")
                item = {"name": name, "direction": direction}
            parsed.append(item)
        if len(parsed) < 2:
            raise ValueError("at least two objectives are needed")
        return parsed


class GenerateConfig(Section):
    """PNAG: fitting the generator and answering budgets. The one source of PNAG's settings: the
    trainer and the fitted generator take this section itself; the defaults are the ones
    ``jobs/bench_generate.py`` reports.

    ``mode``: ``generate`` (the generator answers each budget with no true evaluation) or, as an
    experiment measured worse, ``search`` (the per-budget search: evaluations spent on the
    requested budgets, best verified architecture within each; its own knobs are not here but in
    ``pipeline.generate.search_mode.SearchModeOptions``).
    """

    mode: Literal["generate", "search"] = "generate"
    budget_metrics: list[str] = Field(["params_m"], min_length=1)  # params_m, macs_m/flops_m, latency_ms@<profile>
    budgets: list[float | list[float]] = []  # one value per budget, or one list per budget for several metrics
    evals: int = Field(300, ge=6)  # true evaluations in total to fit on (search mode: training + verification)
    hidden_size: int = Field(64, ge=4)
    training_steps: int = Field(200, ge=1)  # REINFORCE steps of the first fit
    round_steps: int = Field(30, ge=0)  # warm-start REINFORCE steps after each evaluated batch
    evaluator_steps: int = Field(500, ge=1)  # ranking-loss steps of R's first fit
    evaluator_round_steps: int = Field(100, ge=0)
    samples_per_budget: int = Field(128, ge=1)  # policy samples per budget and temperature
    temperatures: list[float] = Field([1.0, 2.0], min_length=1)  # generate mode: sampling temperatures (> 0)
    pessimism: float = Field(2.0, ge=0.0)  # rank samples by GP lower bound mean - pessimism * sd (0: LightGBM)
    accuracy_clip_quantile: float = Field(0.2, ge=0.0, lt=1.0)  # accuracy predictor: targets clipped from below
    entropy_weight: float = Field(0.5, ge=0.0)  # REINFORCE entropy bonus (0.5 keeps the policy diverse)
    clone_weight: float = Field(1.0, ge=0.0)  # fit's final training: imitate the best measured arch per budget (0: off)
    init_fraction: float = Field(1 / 3, gt=0.0, lt=1.0)  # share of evals on random architectures
    refit_every: int = Field(3, ge=1)  # evaluated batches between warm refits of R and the generator
    pool_size: int = Field(2000, ge=10)  # random architectures in R's training pool
    batch_size: int = Field(128, ge=2)  # REINFORCE batch (budgets drawn per step)

    @field_validator("temperatures")
    @classmethod
    def _positive_temperatures(cls, values: list[float]) -> list[float]:
        if any(not value > 0 for value in values):
            raise ValueError("every sampling temperature must be > 0")
        return values


class PipelineConfig(Section):
    """The whole pipeline's configuration; each stage reads its own section."""

    run: RunConfig = RunConfig()
    ray: RayConfig = RayConfig()
    data: DataConfig = DataConfig()
    supernet: SupernetConfig = SupernetConfig()
    # Stage sections (train, evaluate, search, generate, finetune) are added by their packages'
    # config models below as they are built.
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    search: SearchConfig = SearchConfig()
    generate: GenerateConfig = GenerateConfig()
    finetune: FinetuneConfig = FinetuneConfig()


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
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start} cannot be decoded); "
                              "is it the right file?") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
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
    write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
