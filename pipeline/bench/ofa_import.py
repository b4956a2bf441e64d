"""Importing OFA's supernets and growing OFAv2 on them (the library side of ``jobs/bench_ofa_import.py``).

Three measurements, side by side in one run:

- **exactness**: OFA's own ``OFAMobileNetV3`` (the ``ofa`` package) at widths 1.0 and 1.2, every
  tensor random, saved as OFA publishes it and imported; for ``subnets`` architectures (largest
  and smallest included) at every one of OFA's resolutions, the worst relative logit difference
  ``max|ofa - ours| / max|ofa|`` of the in-supernet forward and of the extracted subnet;
- **import cost**: ``jobs/import_supernet.py`` on a w1.2, 1,000-class file in a fresh process:
  the import's own seconds and the process's peak resident memory;
- **warm start**: at the demo's scale on the embedded data, an ``SE_B`` supernet is trained
  through every phase that applies to it; an ``EE_D`` supernet initialised from it
  (``train.init_from``) is trained through height, depth and expand only; an ``EE_D`` supernet
  from scratch goes through every phase. Reported: the largest and smallest subnets' validation
  top-1 after training (BN recalibrated) and each training's seconds.

``run_ofa_import_bench`` writes ``OUT/bench_ofa_import.parquet`` atomically and prints the tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.atomic import write_parquet_atomic
from pipeline.bench.ofa_reference import ofa_mobilenet_v3, ofa_subnet_config
from pipeline.config import PipelineConfig, load_config
from pipeline.runtime import ray_session
from pipeline.supernet.ofa_format import OFA_RESOLUTIONS, import_ofa_file

REPO = Path(__file__).resolve().parents[2]
WARM_PHASES = ("height", "depth", "expand")
_PEAK_MEMORY_PROBE = """
import resource, subprocess, sys, json
child = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": child.returncode, "peak_mib": peak_kib / 1024, "out": child.stdout, "err": child.stderr}))
"""


def exactness(work: Path, subnets: int, resolutions: tuple[int, ...]) -> pd.DataFrame:
    """Worst relative logit difference against OFA's forward, per width."""
    rows = []
    for width in (1.0, 1.2):
        reference = ofa_mobilenet_v3(1000, width, seed=int(width * 10))
        path = work / f"ofa_mbv3_d234_e346_k357_w{width:g}"
        torch.save({"state_dict": reference.state_dict()}, path)
        net, _ = import_ofa_file(path)
        net.eval()
        rng = np.random.default_rng(0)
        archs = [net.space.largest(), net.space.smallest()] + [net.space.sample(rng) for _ in range(subnets - 2)]
        worst_supernet = worst_static = 0.0
        for arch in archs:
            reference.set_active_subnet(**ofa_subnet_config(arch))
            net.set_active(arch)
            static = net.extract(arch).eval()
            for resolution in resolutions:
                images = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(resolution))
                with torch.no_grad():
                    expected = reference(images)
                    scale = expected.abs().max()
                    worst_supernet = max(worst_supernet, float((expected - net(images)).abs().max() / scale))
                    worst_static = max(worst_static, float((expected - static(images)).abs().max() / scale))
        rows.append({"kind": "exactness", "width_mult": width, "subnets": len(archs), "resolutions": len(resolutions),
                     "worst_rel_supernet": worst_supernet, "worst_rel_extracted": worst_static})
        print(f"exactness w{width:.1f}: {len(archs)} subnets x {len(resolutions)} resolutions, worst relative logit "
              f"difference {worst_supernet:.2e} (supernet), {worst_static:.2e} (extracted)", flush=True)
    return pd.DataFrame(rows)


def import_cost(work: Path) -> pd.DataFrame:
    """The import job on a w1.2, 1,000-class file, in a fresh process: seconds and peak memory."""
    path = work / "ofa_mbv3_d234_e346_k357_w1.2"
    if not path.exists():
        torch.save({"state_dict": ofa_mobilenet_v3(1000, 1.2).state_dict()}, path)
    out = work / "imported-w1.2"
    started = time.perf_counter()
    probe = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY_PROBE, sys.executable, str(REPO / "jobs" / "import_supernet.py"),
         "--ofa", str(path), "--out", str(out)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"import_supernet.py failed: {result['err'].strip()}")
    seconds = float(result["out"].split(" M parameters, in ")[1].split(" s")[0])
    print(f"import w1.2, 1000 classes: {seconds:.2f} s import, {wall:.1f} s for the whole job, "
          f"peak memory {result['peak_mib']:.0f} MiB", flush=True)
    return pd.DataFrame([{"kind": "import", "width_mult": 1.2, "num_classes": 1000, "import_s": seconds,
                          "job_s": wall, "peak_mib": result["peak_mib"]}])


def _train(config: PipelineConfig, run_dir: Path, label: str) -> dict:
    from pipeline.train import train_supernet

    started = time.perf_counter()
    train_supernet(config, run_dir)
    seconds = time.perf_counter() - started
    history = pd.read_parquet(run_dir / "train_metrics.parquet")
    last = history.iloc[-1]
    row = {"kind": "warm_start", "variant": label, "phases": ",".join(dict.fromkeys(history["phase"])),
           "epochs": int(len(history)), "train_s": seconds, "top1_largest": float(last["top1_max"]),
           "top1_smallest": float(last["top1_min"]), "top1_best": float(last["top1_best"])}
    print(f"{label}: {row['phases']} in {seconds:.0f} s; top-1 largest {row['top1_largest']:.1f} %, smallest "
          f"{row['top1_smallest']:.1f} %", flush=True)
    return row


def warm_start(base: PipelineConfig, work: Path) -> pd.DataFrame:
    """SE_B through every phase, EE_D grown on it (height, depth, expand), EE_D from scratch."""
    def variant(early_exits: bool, dense: bool, name: str) -> PipelineConfig:
        config = base.model_copy(deep=True)
        config.supernet.early_exits, config.supernet.dense_skips, config.supernet.parallel_blocks = (
            early_exits, dense, False)
        config.run.name = name
        return config

    rows = [_train(variant(False, False, "base-se-b"), work / "base", "SE_B base (every phase)")]
    grown = variant(True, True, "grown-ee-d")
    grown.train.init_from = str(work / "base" / "supernet" / "supernet.pt")
    grown.train.phases = [phase for phase in grown.train.phases if phase.name in WARM_PHASES]
    rows.append(_train(grown, work / "grown", "EE_D grown on SE_B (height, depth, expand)"))
    rows.append(_train(variant(True, True, "scratch-ee-d"), work / "scratch", "EE_D from scratch (every phase)"))
    return pd.DataFrame(rows)


def run_ofa_import_bench(config_path: str | None, overrides: list[str], out: str | Path, quick: bool = False,
                         parts: tuple[str, ...] = ("exactness", "import", "warm_start")) -> Path:
    """Run the chosen parts; returns the Parquet file written."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    defaults = ["train.num_workers=0", "train.threads_per_worker=2"]
    if quick:
        defaults += ["data.dataset=synthetic", "data.synthetic_images=64", "data.synthetic_classes=4",
                     "data.batch_size=16", "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]",
                     "train.epochs_scale=0.002", "train.steps_per_epoch=1", "train.eval_subnets=0",
                     "train.calibration_images=16", "train.eval_images=16"]
    frames = []
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        if "exactness" in parts:
            frames.append(exactness(work, 3 if quick else 20, (128, 224) if quick else OFA_RESOLUTIONS))
        if "import" in parts:
            frames.append(import_cost(work))
        if "warm_start" in parts:
            base = load_config(config_path or str(REPO / "jobs" / "configs" / "demo.yaml"), defaults + list(overrides))
            with ray_session(base.ray, num_cpus=base.ray.num_cpus or 2):
                frames.append(warm_start(base, work))
    table = pd.concat(frames, ignore_index=True)
    target = out / "bench_ofa_import.parquet"
    write_parquet_atomic(table, target)
    warm = table[table["kind"] == "warm_start"] if "kind" in table else table.iloc[0:0]
    if not warm.empty:
        print(warm[["variant", "epochs", "train_s", "top1_largest", "top1_smallest"]].to_string(
            index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"wrote {target}")
    return target
