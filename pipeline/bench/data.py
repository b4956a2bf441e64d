"""Streamed-data benchmark (the library side of ``jobs/bench_data.py``).

Four measurements on generated ILSVRC-layout JPEG folders (``build_folder``: a pool of distinct
seeded images, ``pipeline.data.synthetic_folder``, copied under new names up to the wanted count,
so a 40,000-image folder takes a minute to write):

- ``memory``: peak resident memory of a training worker and of an evaluator actor, each in a fresh
  process (``pipeline.bench.data_probe``), on folders of two sizes, streamed and held in memory.
  The training probe runs the worker's data path and a supernet step per batch; the evaluator
  probe builds the real ``AccuracyWorker`` and scores one architecture. Reported: the process's
  own peak RSS and the largest DataLoader worker's, from ``getrusage``.
- ``throughput``: images per second per core that the loader decodes (DataLoader workers) and the
  trainer augments (random resized crop + flip at 224 px), against the images per second OFA's
  w1.0 supernet trains at 224 px, batch 64, with a random subnet per step, on the same number of
  cores; the ratio is what the issue's "at least 1.5" target is about.
- ``scaling``: Ray Data decoding on a simulated cluster (``ray.cluster_utils.Cluster``): a head
  node for the trainer (no CPUs for Ray tasks) and 1 or 2 CPU-only nodes beside it, each with one
  CPU; images per second the trainer's process receives.
- ``gpu`` (asked for by name; a node without CUDA is refused before any part runs): OFA's w1.0
  supernet trained at 224 px, batch 64, on one GPU in fp32 and in bf16 with channels_last
  (``pipeline.supernet.precision.ForwardPrecision``, the training loop's own), side by side in one
  run, and whether the data path keeps up: the decode-and-augment rate at ``workers`` cores
  against each training rate, and the loader processes each would need at the per-core rate.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.synthetic_folder import make_ilsvrc_folder

#: distinct images per class; the other files are byte copies of them under new names
POOL_PER_CLASS = 20


def build_folder(root: Path, train_images: int, size: int = 256, classes: int = 20, val_images: int = 200,
                 seed: int = 0) -> Path:
    """An ILSVRC folder with ``train_images`` training files of ``size`` px (reused when complete)."""
    marker = root / ".complete"
    if marker.is_file() and marker.read_text() == f"{train_images} {size} {classes} {val_images} {seed}":
        return root
    if root.exists():
        shutil.rmtree(root)
    pool = min(train_images, POOL_PER_CLASS * classes)
    generated = make_ilsvrc_folder(root, classes=classes, train_images=pool, val_images=val_images,
                                   size=(size * 5 // 4, size), seed=seed, messy=False, quality=90)
    for wnid in generated.wnids:
        folder = root / "train" / wnid
        files = sorted(folder.iterdir())
        wanted = train_images // classes + (1 if generated.wnids.index(wnid) < train_images % classes else 0)
        for copy in range(len(files), wanted):
            source = files[copy % len(files)]
            (folder / f"{wnid}_copy_{copy:06d}.JPEG").write_bytes(source.read_bytes())
    marker.write_text(f"{train_images} {size} {classes} {val_images} {seed}")
    return root


def probe(role: str, folder: Path, stream: str, image_size: int, workdir: Path, **options: Any) -> dict[str, Any]:
    """Run ``pipeline.bench.data_probe`` in a fresh process and return its JSON line."""
    command = [sys.executable, "-m", "pipeline.bench.data_probe", role, "--path", str(folder), "--stream", stream,
               "--image-size", str(image_size), "--workdir", str(workdir)]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"probe {role} failed ({done.returncode}): {done.stderr.strip().splitlines()[-3:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(work: Path, sizes: tuple[int, int], image_size: int, steps: int) -> list[dict[str, Any]]:
    """Peak RSS of both roles, streamed and in memory, on folders of both sizes."""
    rows = []
    for count in sizes:
        folder = build_folder(work / f"folder_{count}", count)
        for stream in ("on", "off"):
            for role in ("train", "evaluator"):
                started = time.perf_counter()
                figures = probe(role, folder, stream, image_size, work, steps=steps)
                rows.append({"part": "memory", "role": role, "stream": stream, "images": count,
                             "image_size": image_size, "seconds": time.perf_counter() - started, **figures})
                print(f"memory {role:9s} stream={stream:3s} {count:6d} images: peak RSS "
                      f"{figures['peak_rss_mib']:.0f} MiB (largest loader worker "
                      f"{figures['worker_peak_rss_mib']:.0f} MiB)", flush=True)
    return rows


def _rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def decode_rate(folder: Path, workers: int, image_size: int, batches: int, batch: int = 64) -> float:
    """Images per second the DataLoader with ``workers`` decode processes delivers (decode only)."""
    from pipeline.data import LoaderSettings, load_splits

    splits = load_splits("imagenet", str(folder), image_size=image_size, stream="on", loader_workers=workers)
    train = splits.train.with_loader(LoaderSettings(workers=workers))
    generator = torch.Generator().manual_seed(0)
    stream = train.batches(batch, shuffle=True, generator=generator, drop_last=True)
    next(stream)  # the workers' start-up is not decoding
    count, started = 0, time.perf_counter()
    for _, (images, _labels) in zip(range(batches), stream):
        count += images.shape[0]
    seconds = time.perf_counter() - started
    stream.close()
    return _rate(count, seconds)


def augment_rate(image_size: int, resolution: int, batches: int, batch: int = 64) -> float:
    """Images per second the trainer's own augmentation (normalise, random resized crop, flip) runs at."""
    from pipeline.data import train_transform

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    train_transform(images, mean, std, resolution, generator)
    started = time.perf_counter()
    for _ in range(batches):
        train_transform(images, mean, std, resolution, generator)
    return _rate(batches * batch, time.perf_counter() - started)


def training_rate(threads: int, resolution: int, steps: int, batch: int = 64, seed: int = 0, device: str = "cpu",
                  precision: str = "fp32") -> float:
    """Images per second OFA's w1.0 supernet (1,000 classes) trains at: a random subnet per step, SGD,
    the forward pass under ``precision`` on ``device`` as the training loop runs it (autocast,
    channels_last on CUDA, the loss in float32, a gradient scaler for fp16)."""
    from pipeline.supernet.builder import build_supernet
    from pipeline.supernet.ofa_format import OFALayout
    from pipeline.supernet.precision import ForwardPrecision, float_logits, optimizer_step, scaled_backward

    forward = ForwardPrecision.on(precision, device)
    synchronize = torch.cuda.synchronize if forward.device_type == "cuda" else (lambda: None)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layout = OFALayout(1.0, (3, 5, 7), (3, 4, 6), (2, 3, 4), 1000)
        net = forward.prepare_model(build_supernet(layout.space_options(), 1000, seed=seed).to(device).train())
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
        scaler = forward.grad_scaler()
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        x = forward.prepare_batch(torch.randn(batch, 3, resolution, resolution, generator=generator).to(device))
        y = torch.randint(0, 1000, (batch,), generator=generator).to(device)
        times = []
        for step in range(steps + 1):
            net.set_active(net.space.sample(rng))
            synchronize()
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with forward.autocast():
                logits = net(x)
            loss = F.cross_entropy(float_logits(logits), y)
            scaled_backward(loss, scaler)
            optimizer_step(optimizer, scaler)
            synchronize()
            if step:  # the first step allocates
                times.append(time.perf_counter() - started)
        return batch / statistics.median(times)
    finally:
        torch.set_num_threads(previous)


def data_rates(work: Path, workers: int, image_size: int, resolution: int, batches: int) -> dict[str, float]:
    """Decode on 1 and ``workers`` cores, augment per core, and decode + augment on 1 and ``workers``
    cores (per core, the loader's decode and the trainer's augmentation run one after the other)."""
    folder = build_folder(work / "folder_throughput", 64 * (batches + 2) * max(1, workers))
    one_decode = decode_rate(folder, 1, image_size, batches)
    many_decode = decode_rate(folder, workers, image_size, batches) if workers > 1 else one_decode
    augment = augment_rate(image_size, resolution, max(3, batches // 2))
    return {"decode_one": one_decode, "decode_many": many_decode, "augment": augment,
            "data_one": 1.0 / (1.0 / one_decode + 1.0 / augment),
            "data_many": 1.0 / (1.0 / many_decode + 1.0 / (augment * workers))}


def throughput(work: Path, workers: int, image_size: int, resolution: int, batches: int,
               train_steps: int) -> list[dict[str, Any]]:
    """Decode + augment against supernet training, per core and at ``workers`` cores."""
    rates = data_rates(work, workers, image_size, resolution, batches)
    one_decode, many_decode, augment = rates["decode_one"], rates["decode_many"], rates["augment"]
    data_one, data_many = rates["data_one"], rates["data_many"]
    rows = []
    train_one = training_rate(1, resolution, train_steps)
    train_many = training_rate(workers, resolution, train_steps) if workers > 1 else train_one
    for cores, decode, data, train in ((1, one_decode, data_one, train_one), (workers, many_decode, data_many,
                                                                               train_many)):
        rows.append({"part": "throughput", "cores": cores, "decode_img_s": decode, "augment_img_s_per_core": augment,
                     "data_img_s": data, "train_img_s": train, "ratio": data / train,
                     "image_size": image_size, "resolution": resolution})
        print(f"throughput {cores} core(s): decode {decode:.0f} img/s, decode+augment {data:.0f} img/s, "
              f"w1.0 supernet training {train:.1f} img/s at {resolution} px batch 64: ratio {data / train:.1f}",
              flush=True)
    return rows


GPU_REFUSAL = "the gpu part needs a CUDA device, which torch does not see on this node"


def gpu(work: Path, workers: int, image_size: int, resolution: int, batches: int, train_steps: int,
        batch: int = 64, device: str = "cuda") -> list[dict[str, Any]]:
    """The w1.0 supernet on one GPU in fp32 and in bf16 (+ channels_last on CUDA), against this
    node's data path (``device`` is ``cuda`` but for the CPU test of the rows)."""
    rates = data_rates(work, workers, image_size, resolution, batches)
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else device
    rows = []
    for precision in ("fp32", "bf16"):
        train = training_rate(torch.get_num_threads(), resolution, train_steps, batch, device=device,
                              precision=precision)
        rows.append({"part": "gpu", "precision": precision, "channels_last": precision != "fp32" and device == "cuda",
                     "train_img_s": train, "data_img_s": rates["data_many"], "cores": workers,
                     "ratio": rates["data_many"] / train, "workers_needed": train / rates["data_one"],
                     "device_name": device_name, "resolution": resolution, "batch": batch})
        print(f"gpu {precision}{' + channels_last' if precision != 'fp32' else ''}: w1.0 supernet {train:.0f} img/s "
              f"at {resolution} px batch {batch}; data path {rates['data_many']:.0f} img/s on {workers} core(s) "
              f"(ratio {rates['data_many'] / train:.2f}), about {train / rates['data_one']:.1f} loader cores needed",
              flush=True)
    return rows


def scaling(work: Path, extra_nodes: tuple[int, ...], image_size: int, batches: int,
            batch: int = 64) -> list[dict[str, Any]]:
    """Ray Data decoding throughput with 1, 2, ... CPU-only nodes beside the trainer's node."""
    folder = build_folder(work / "folder_throughput_scaling", batch * (batches + 2) * 2)
    rows = []
    for nodes in extra_nodes:
        started = time.perf_counter()
        figures = probe("scaling", folder, "on", image_size, work, nodes=nodes, batches=batches)
        rows.append({"part": "scaling", "extra_nodes": nodes, "seconds": time.perf_counter() - started, **figures})
        print(f"scaling: {nodes} CPU-only node(s) beside the trainer: {figures['img_s']:.0f} img/s decoded by "
              f"Ray Data on {figures['nodes_used']} node(s)", flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue asks for, from the rows."""
    out: dict[str, Any] = {}
    memory_rows = [row for row in rows if row["part"] == "memory"]
    sizes = sorted({row["images"] for row in memory_rows})
    for role in ("train", "evaluator"):
        for stream, label in (("on", "streamed"), ("off", "in_memory")):
            chosen = {row["images"]: row for row in memory_rows if row["role"] == role and row["stream"] == stream}
            if len(sizes) == 2 and len(chosen) == 2:
                small, large = chosen[sizes[0]], chosen[sizes[1]]
                out[f"memory_growth_{role}_{label}"] = large["peak_rss_mib"] / small["peak_rss_mib"] - 1.0
                if large["worker_peak_rss_mib"] and small["worker_peak_rss_mib"]:
                    out[f"memory_growth_{role}_{label}_loader_worker"] = (
                        large["worker_peak_rss_mib"] / small["worker_peak_rss_mib"] - 1.0)
    for row in rows:
        if row["part"] == "throughput":
            out[f"data_to_train_ratio_{row['cores']}_cores"] = row["ratio"]
        if row["part"] == "scaling":
            out[f"ray_data_img_s_{row['extra_nodes']}_nodes"] = row["img_s"]
        if row["part"] == "gpu":
            out[f"gpu_train_img_s_{row['precision']}"] = row["train_img_s"]
            out[f"gpu_data_to_train_ratio_{row['precision']}"] = row["ratio"]
    if {"gpu_train_img_s_fp32", "gpu_train_img_s_bf16"} <= out.keys():
        out["gpu_bf16_speedup"] = out["gpu_train_img_s_bf16"] / out["gpu_train_img_s_fp32"]
    return out


def run_data_bench(out: Path, parts: list[str], work: Path | None = None, sizes: tuple[int, int] = (5000, 40000),
                   memory_image_size: int = 128, workers: int = 2, quick: bool = False) -> dict[str, Any]:
    """Run the chosen parts; write ``bench_data.csv`` and ``bench_data.json`` into ``out``.

    ``work`` holds the generated folders (default ``out/work``); a second run given the same
    ``work`` reuses them."""
    import pandas as pd

    from pipeline.atomic import write_text_atomic
    from pipeline.errors import ConfigError

    if "gpu" in parts and not torch.cuda.is_available():
        raise ConfigError(GPU_REFUSAL)
    out.mkdir(parents=True, exist_ok=True)
    work = work or out / "work"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if "memory" in parts:
        rows += memory(work, sizes, memory_image_size, steps=3 if quick else 20)
    if "throughput" in parts:
        rows += throughput(work, workers, 256, 224, batches=3 if quick else 12, train_steps=1 if quick else 2)
    if "scaling" in parts:
        rows += scaling(work, (1, 2), 256, batches=3 if quick else 20)
    if "gpu" in parts:
        rows += gpu(work, workers, 256, 224, batches=3 if quick else 12, train_steps=2 if quick else 20)
    figures = summary(rows)
    pd.DataFrame(rows).to_csv(out / "bench_data.csv", index=False)
    write_text_atomic(out / "bench_data.json", json.dumps({"summary": figures, "rows": rows}, indent=1, default=str))
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")
    return figures
