"""The OFAv2 ablation and supernet-training throughput (the library side of ``jobs/bench_ofav2.py``).

Ablation: four variants trained with the same (scaled) OFAv2 schedule on the configured data set
(the embedded digits by default) - the OFA baseline (SE_B, distilled from the fixed full network,
as OFA does), baseline + dynamic teacher, EE_D + dynamic teacher, EE_DP + dynamic teacher. After
every phase it records the best evaluated subnet's validation top-1 (max, min and sampled
subnets, BN recalibrated); ``kind == "ablation"`` rows.

Throughput: the EE_D supernet trained for a fixed number of steps by 1 and by 2 Ray Train workers
(gloo, one thread each, per-worker batch fixed), side by side and repeated; images/s is the median
over epochs and repeats (training time only), and the ratio is 2-worker / 1-worker
(``kind == "throughput"`` rows). ``quick`` shrinks everything for the test.

``run_ofav2_bench(config_path, overrides, out, quick, ablation, throughput)`` runs both (or one),
writes ``OUT/bench_ofav2.parquet`` atomically and prints the tables.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.atomic import write_parquet_atomic
from pipeline.config import TRAIN_PHASES, PipelineConfig, load_config
from pipeline.errors import ConfigError
from pipeline.runtime import ray_session

PHASES = list(TRAIN_PHASES)
VARIANTS = {
    "baseline (SE_B, fixed teacher)": {"early_exits": False, "dense_skips": False, "parallel_blocks": False,
                                       "kd": "fixed"},
    "baseline + dynamic teacher": {"early_exits": False, "dense_skips": False, "parallel_blocks": False,
                                   "kd": "dynamic"},
    "EE_D + dynamic teacher": {"early_exits": True, "dense_skips": True, "parallel_blocks": False, "kd": "dynamic"},
    "EE_DP + dynamic teacher": {"early_exits": True, "dense_skips": True, "parallel_blocks": True, "kd": "dynamic"},
}


def bench_defaults(quick: bool) -> list[str]:
    """Settings applied before the user's --set overrides."""
    common = ["train.num_workers=0", "train.threads_per_worker=1"]
    if quick:
        return common + [
            "data.dataset=synthetic", "data.synthetic_images=64", "data.synthetic_classes=4", "data.batch_size=16",
            "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]",
            "train.epochs_scale=0.005", "train.steps_per_epoch=1", "train.eval_subnets=0",
            "train.calibration_images=16", "train.eval_images=16",
            "train.phases=[" + ",".join(f"{{name: {name}, parts: [{{epochs: 200, lr: 0.01, subnets_per_step: 2}}]}}"
                                        for name in PHASES) + "]",
        ]
    return common + [
        "data.batch_size=64", "supernet.stage_widths=[16,24,32,48,64]", "supernet.resolutions=[24,28,32]",
        "train.epochs_scale=0.02", "train.eval_subnets=2", "train.eval_interval=1000",
        "train.calibration_images=128", "train.calibration_batch_size=128", "train.eval_images=256",
    ]


def variant_config(base: PipelineConfig, name: str, settings: dict) -> PipelineConfig:
    config = base.model_copy(deep=True)
    for key in ("early_exits", "dense_skips", "parallel_blocks"):
        setattr(config.supernet, key, settings[key])
    config.train.distillation = settings["kd"]
    config.run.name = "bench-" + "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return config


def ablation(base: PipelineConfig, work: Path) -> pd.DataFrame:
    from pipeline.train import train_supernet

    rows = []
    for name, settings in VARIANTS.items():
        config = variant_config(base, name, settings)
        train_supernet(config, work / config.run.name)
        history = pd.read_parquet(work / config.run.name / "train_metrics.parquet")
        for phase, frame in history.groupby("phase", sort=False):
            last = frame.iloc[-1]
            rows.append({"kind": "ablation", "variant": name, "phase": phase, "epochs": int(len(frame)),
                         "top1_best": float(last["top1_best"]), "top1_max": float(last["top1_max"]),
                         "top1_min": float(last["top1_min"]),
                         "images_per_s": float(frame["images_per_s"].median())})
    return pd.DataFrame(rows)


def throughput(base: PipelineConfig, work: Path, quick: bool) -> pd.DataFrame:
    from pipeline.train import train_supernet

    config = variant_config(base, "throughput", VARIANTS["EE_D + dynamic teacher"])
    config.train.distillation = "none"
    config.train.threads_per_worker = 1
    config.train.eval_subnets = 0
    config.train.eval_images = 16
    config.train.calibration_images = 16
    epochs, steps = (1, 2) if quick else (4, 8)
    if not quick:
        config.data.batch_size = 64  # per worker: weak scaling, as data-parallel training is used
    config.train.steps_per_epoch = steps
    config.train.epochs_scale = 1.0
    config.train.phases = [{"name": "full", "parts": [{"epochs": epochs, "lr": 0.05}]}]
    samples: dict[int, list[float]] = {1: [], 2: []}
    repeats = 1 if quick else 3
    for repeat in range(repeats):
        for workers in (1, 2):
            config.train.num_workers = workers
            run_dir = work / f"throughput-{workers}w-{repeat}"
            train_supernet(config, run_dir)
            history = pd.read_parquet(run_dir / "train_metrics.parquet")
            samples[workers].extend(history["images_per_s"].iloc[1:].tolist() or history["images_per_s"].tolist())
    one, two = statistics.median(samples[1]), statistics.median(samples[2])
    return pd.DataFrame([
        {"kind": "throughput", "variant": "EE_D", "phase": "full", "workers": 1, "images_per_s": one},
        {"kind": "throughput", "variant": "EE_D", "phase": "full", "workers": 2, "images_per_s": two},
        {"kind": "throughput", "variant": "EE_D", "phase": "full", "workers": 2, "ratio_2w_1w": two / one},
    ])


def print_tables(ablation_rows: pd.DataFrame, speed_rows: pd.DataFrame) -> None:
    """The ablation pivot (variants x phases) and the throughput line."""
    if not ablation_rows.empty:
        pivot = ablation_rows.pivot(index="variant", columns="phase", values="top1_best")
        pivot = pivot.reindex(index=list(VARIANTS), columns=[p for p in PHASES if p in pivot.columns])
        print("best evaluated subnet, validation top-1 (%) after each phase:")
        print(pivot.to_string(float_format=lambda v: f"{v:.1f}", na_rep="-"))
    if not speed_rows.empty:
        ratio = float(speed_rows["ratio_2w_1w"].dropna().iloc[0])
        one, two = speed_rows["images_per_s"].iloc[0], speed_rows["images_per_s"].iloc[1]
        print(f"training throughput (1 thread per worker): 1 worker {one:.0f} img/s, 2 workers {two:.0f} img/s, "
              f"ratio {ratio:.2f} (target >= 1.6)")


def run_ofav2_bench(config_path: str | None, overrides: list[str], out: str | Path, quick: bool = False,
                    ablation_on: bool = True, throughput_on: bool = True) -> Path:
    """Run the ablation and/or the throughput measurement; returns the Parquet file written."""
    if not (ablation_on or throughput_on):
        raise ConfigError("--skip-throughput and --skip-ablation together leave nothing to measure")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(config_path, bench_defaults(quick) + list(overrides))
    with ray_session(base.ray, num_cpus=base.ray.num_cpus or 2), tempfile.TemporaryDirectory(dir=out) as tmp:
        ablation_rows = ablation(base, Path(tmp)) if ablation_on else pd.DataFrame()
        speed_rows = throughput(base, Path(tmp), quick) if throughput_on else pd.DataFrame()
    target = out / "bench_ofav2.parquet"
    write_parquet_atomic(pd.concat([ablation_rows, speed_rows], ignore_index=True), target)
    print_tables(ablation_rows, speed_rows)
    print(f"wrote {target}")
    return target
