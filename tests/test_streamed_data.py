"""Streamed image data: imagenet (ILSVRC layout) and streamed folders against the in-memory path.

A generated JPEG folder (``pipeline.data.synthetic_folder``) with the files real folders hold
(CMYK, grayscale, a PNG named ``.JPEG``, a truncated JPEG) checks decoding, the one warning line for
undecodable files, identical batches streamed and in memory, the bad layouts that the jobs refuse
before Ray starts, that a listing holds no decoded image, and (slow) the whole pipeline on it.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.config import DataConfig
from pipeline.data import FileImageSet, StreamedSplits, TensorImageSet, eval_transform, load_splits, train_transform
from pipeline.data.decode import decode_image
from pipeline.data.synthetic_folder import make_ilsvrc_folder
from pipeline.errors import DataError

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = "jobs/configs/pipeline_tiny.yaml"


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    return make_ilsvrc_folder(tmp_path_factory.mktemp("messy") / "ilsvrc", classes=3, train_images=60,
                              val_images=12, size=(48, 40), seed=0, messy=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return make_ilsvrc_folder(tmp_path_factory.mktemp("clean") / "ilsvrc", classes=3, train_images=48,
                              val_images=9, size=(48, 40), seed=1, messy=False)


def _undecodable_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]


def test_messy_files_decode_to_rgb_of_the_right_size(messy):
    for kind in ("cmyk", "gray", "png"):
        image = decode_image(messy.messy[kind], 32)
        assert image is not None and image.shape == (32, 32, 3) and image.dtype == np.uint8, kind
    assert decode_image(messy.messy["truncated"], 32) is None


def test_truncated_images_stay_undecodable(messy, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DataError, match="LOAD_TRUNCATED_IMAGES"):
        decode_image(messy.messy["truncated"], 32)


def test_truncated_file_is_counted_skipped_and_warned_once(messy, caplog):
    splits = load_splits("imagenet", str(messy.root), image_size=32, loader_workers=0)
    assert isinstance(splits, StreamedSplits)
    assert splits.sizes["test"] == 12 and splits.num_classes == 3 and splits.eval_crop == 0.875
    full = splits.train.concat(splits.val)
    truncated = [i for i in range(len(full)) if full.path(i).endswith("_truncated.JPEG")]
    assert len(truncated) == 1
    with caplog.at_level(logging.WARNING):
        batches = list(full.batches(len(full)))
    assert len(batches) == 1 and batches[0][0].shape == (len(full) - 1, 3, 32, 32)
    assert batches[0][1].shape[0] == len(full) - 1
    lines = _undecodable_lines(caplog)
    assert len(lines) == 1 and "skipped 1 " in lines[0] and "_truncated.JPEG" in lines[0], lines


def test_in_memory_imagenet_skips_the_truncated_file(messy, caplog):
    with caplog.at_level(logging.WARNING):
        splits = load_splits("imagenet", str(messy.root), image_size=32, stream="off")
    assert not splits.streamed and sum(splits.sizes.values()) == 60 + 4 - 1 + 12
    assert len(_undecodable_lines(caplog)) == 1


@pytest.mark.parametrize("world_size", [1, 2])
def test_streamed_and_in_memory_give_the_same_batches(clean, world_size):
    memory = load_splits("folder", str(clean.root), image_size=32, stream="off")
    streamed = load_splits("folder", str(clean.root), image_size=32, stream="on", loader_workers=0)
    assert not memory.streamed and streamed.streamed
    assert memory.sizes == streamed.sizes
    assert torch.equal(memory.train.labels, streamed.train.labels)
    mean, std = memory.mean, memory.std
    for rank in range(world_size):
        mem_gen, file_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        pairs = zip(memory.train.batches(8, shuffle=True, generator=mem_gen, drop_last=True, rank=rank,
                                         world_size=world_size),
                    streamed.train.batches(8, shuffle=True, generator=file_gen, drop_last=True, rank=rank,
                                           world_size=world_size), strict=True)
        for (mem_x, mem_y), (file_x, file_y) in pairs:
            assert torch.equal(mem_x, file_x) and torch.equal(mem_y, file_y)
            assert torch.equal(train_transform(mem_x, mean, std, 24, mem_gen),
                               train_transform(file_x, mean, std, 24, file_gen))


def test_decode_workers_give_the_same_batches(clean):
    inline = load_splits("imagenet", str(clean.root), image_size=32, loader_workers=0)
    workers = load_splits("imagenet", str(clean.root), image_size=32, loader_workers=2)
    first = list(inline.train.batches(8, shuffle=True, generator=torch.Generator().manual_seed(1)))
    second = list(workers.train.batches(8, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert len(first) == len(second)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second, strict=True))


def test_validation_is_a_seeded_share_of_train_and_val_is_the_test_split(clean):
    one = load_splits("imagenet", str(clean.root), image_size=32, seed=0, loader_workers=0)
    again = load_splits("imagenet", str(clean.root), image_size=32, seed=0, loader_workers=0)
    other = load_splits("imagenet", str(clean.root), image_size=32, seed=1, loader_workers=0)
    assert np.array_equal(one.val.paths, again.val.paths) and not np.array_equal(one.val.paths, other.val.paths)
    assert all(p.startswith(b"train/") for p in one.val.paths)
    assert all(p.startswith(b"val/") for p in one.test.paths) and len(one.test) == 9
    assert not set(one.val.paths) & set(one.train.paths)


def test_listing_holds_no_decoded_images(tmp_path):
    small = make_ilsvrc_folder(tmp_path / "small", train_images=30, val_images=6, size=(16, 16), messy=False)
    large = make_ilsvrc_folder(tmp_path / "large", train_images=30, val_images=6, size=(160, 160), messy=False)
    sizes = []
    for folder, image_size in ((small, 16), (large, 160)):
        splits = load_splits("imagenet", str(folder.root), image_size=image_size, loader_workers=0)
        assert isinstance(splits.train, FileImageSet)
        sizes.append(len(pickle.dumps(splits)))
        assert splits.train.listing_bytes < 64 * len(splits.train)
    assert abs(sizes[0] - sizes[1]) < 200, sizes  # only the root path and the image size differ


def test_eval_crop_takes_the_centre_of_a_larger_resize():
    images = torch.arange(3 * 40 * 40, dtype=torch.int64).remainder(256).to(torch.uint8).view(1, 3, 40, 40)
    whole = eval_transform(images, (0.5,) * 3, (0.25,) * 3, 28)
    cropped = eval_transform(images, (0.5,) * 3, (0.25,) * 3, 28, crop=0.875)
    assert whole.shape == cropped.shape == (1, 3, 28, 28) and not torch.equal(whole, cropped)
    resized = eval_transform(images, (0.5,) * 3, (0.25,) * 3, 32)
    assert torch.equal(cropped, resized[:, :, 2:30, 2:30])


def test_hold_out_and_calibration_on_streamed_splits(clean):
    from pipeline.data import calibration_subset, hold_out_from_train

    splits = load_splits("imagenet", str(clean.root), image_size=32, loader_workers=0)
    reduced, held = hold_out_from_train(splits, 6, seed=3)
    assert len(reduced.train) == len(splits.train) - 6 and held.images.shape == (6, 3, 32, 32)
    assert not set(reduced.train.paths) & set(splits.train.paths[held.train_indices])
    assert torch.equal(calibration_subset(splits, 10, 0), calibration_subset(splits, 10, 0))
    subset = splits.eval_subset(None, 0)
    assert len(subset) == len(splits.val)
    assert isinstance(subset.cached(10**9), TensorImageSet) and isinstance(subset.cached(10), FileImageSet)


def test_stream_on_needs_a_file_data_set():
    with pytest.raises(ValueError, match="stream: on"):
        DataConfig(dataset="digits", stream="on")


def _bad_empty_class(root: Path) -> None:
    make_ilsvrc_folder(root, train_images=9, val_images=3, size=(16, 16), messy=False)
    (root / "train" / "n99999999").mkdir()


def _bad_val_class(root: Path) -> None:
    make_ilsvrc_folder(root, train_images=9, val_images=3, size=(16, 16), messy=False)
    (root / "val" / "n77777777").mkdir()


def _bad_no_images(root: Path) -> None:
    for wnid in ("n1", "n2"):
        (root / "train" / wnid).mkdir(parents=True)


def _bad_is_file(root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("not a folder")


@pytest.mark.parametrize("setup, fragment", [
    (_bad_empty_class, "n99999999"), (_bad_val_class, "n77777777"), (_bad_no_images, "holds no images"),
    (_bad_is_file, "is a file"),
], ids=["empty class", "val class not in train", "no images", "path is a file"])
def test_bad_layouts_are_one_line_before_ray(setup, fragment, tmp_path):
    root = tmp_path / "data"
    setup(root)
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "jobs/train_supernet.py", "--config", TINY, "--out", str(out),
                             "--set", "data.dataset=imagenet", "--set", f"data.path={root}"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr[-2000:]
    assert "ILSVRC" in lines[0]
    assert not (out / "config.yaml").exists() and not (out / "train").exists()
    assert "Ray" not in result.stdout


@pytest.mark.slow
def test_pipeline_runs_on_a_streamed_imagenet_folder(tmp_path):
    folder = make_ilsvrc_folder(tmp_path / "ilsvrc", classes=3, train_images=90, val_images=12,
                                size=(48, 40), seed=2, messy=True)
    config = yaml.safe_load((REPO / TINY).read_text())
    config["data"] = {"dataset": "imagenet", "path": str(folder.root), "image_size": 40, "batch_size": 16,
                      "loader_workers": 1}
    config["supernet"]["resolutions"] = [32, 40]
    config["search"].update({"max_evaluations": 8, "initial_size": 4, "candidates_per_iteration": 4})
    config["evaluate"]["val_images"] = 16
    config_file = tmp_path / "imagenet.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "jobs/run_pipeline.py", "--config", str(config_file), "--out",
                             str(out), "--stages", "train,search,finetune"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert len(pd.read_parquet(out / "archive.parquet")) >= 8
    finetuned = pd.read_parquet(out / "finetuned.parquet")
    assert (finetuned["status"] == "ok").all() and finetuned["top1"].notna().all()


def test_a_decode_size_below_the_largest_resolution_is_warned_once(caplog):
    from pipeline.config import load_config
    from pipeline.preflight import warn_small_decode_size

    small = load_config(None, ["data.dataset=imagenet", "data.path=/data", "supernet.resolutions=[128,224]"])
    with caplog.at_level("WARNING"):
        warn_small_decode_size(small)
    assert [r.getMessage() for r in caplog.records] == [
        "warning: data.image_size is 32 but the largest resolution 224 needs 256 px; every image is upsampled "
        "(set data.image_size: 256)"]
    caplog.clear()
    enough = load_config(None, ["data.dataset=imagenet", "data.path=/data", "supernet.resolutions=[128,224]",
                                "data.image_size=256"])
    warn_small_decode_size(enough)
    assert not caplog.records
