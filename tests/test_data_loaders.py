"""Every data loader against a small fabricated directory in its real layout, and bad paths."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import DataConfig
from pipeline.data import load_splits, load_splits_from_config
from pipeline.errors import DataError

torch.set_num_threads(1)


def _cifar_batch(count: int, num_classes: int, label_key: bytes, offset: int) -> dict:
    rng = np.random.default_rng(offset)
    return {
        b"data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
        label_key: [(offset + index) % num_classes for index in range(count)],
        b"batch_label": b"fabricated",
    }


def _dump(path: Path, value: object) -> None:
    with path.open("wb") as handle:
        pickle.dump(value, handle)


def make_cifar10(root: Path, per_batch: int = 20, test: int = 10) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for index in range(1, 6):
        _dump(folder / f"data_batch_{index}", _cifar_batch(per_batch, 10, b"labels", index * 100))
    _dump(folder / "test_batch", _cifar_batch(test, 10, b"labels", 7))
    _dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return folder


def make_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    _dump(folder / "train", _cifar_batch(300, 100, b"fine_labels", 0))
    _dump(folder / "test", _cifar_batch(50, 100, b"fine_labels", 3))
    _dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    return folder


def _write_image(path: Path, size: tuple[int, int], value: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    array[: size[1] // 2, :, 0] = 255 - value  # some structure
    image = Image.fromarray(array)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)


def make_tiny(root: Path) -> Path:
    folder = root / "tiny-imagenet-200"
    wnids = ["n001", "n002", "n003"]
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for class_index, wnid in enumerate(wnids):
        for index in range(5):
            mode = "L" if index == 0 else "RGB"  # Tiny ImageNet holds some grey JPEGs
            size = (70, 64) if index == 1 else (64, 64)
            _write_image(folder / "train" / wnid / "images" / f"{wnid}_{index}.JPEG", size, 40 * class_index + index, mode)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for index in range(4):
        name = f"val_{index}.JPEG"
        _write_image(folder / "val" / "images" / name, (64, 64), 10 * index)
        lines.append(f"{name}\t{wnids[index % 3]}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def make_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 7) -> Path:
    for class_index, name in enumerate(classes):
        for index in range(per_class):
            suffix = ".png" if index % 2 else ".jpg"
            _write_image(root / name / f"img{index}{suffix}", (40 + index, 30), 30 * class_index + index)
    return root


def test_cifar10_layout_from_dir_or_parent(tmp_path):
    folder = make_cifar10(tmp_path)
    for path in (tmp_path, folder):
        splits = load_splits("cifar10", str(path), seed=1)
        assert splits.num_classes == 10 and splits.image_size == 32 and splits.name == "cifar10"
        assert splits.sizes == {"train": 85, "val": 15, "test": 10}
        assert splits.class_names[:2] == ("c0", "c1")
        assert splits.train_images.dtype == torch.uint8 and splits.train_images.shape[1:] == (3, 32, 32)
    # The test split is the official test batch, byte for byte (row-major CHW).
    test = pickle.loads((folder / "test_batch").read_bytes())
    expected = torch.from_numpy(test[b"data"].reshape(-1, 3, 32, 32))
    assert torch.equal(splits.test_images, expected)
    assert splits.test_labels.tolist() == test[b"labels"]


def test_cifar100_uses_fine_labels(tmp_path):
    make_cifar100(tmp_path)
    splits = load_splits("cifar100", str(tmp_path))
    assert splits.num_classes == 100
    assert splits.sizes == {"train": 255, "val": 45, "test": 50}
    assert int(splits.train_labels.max()) < 100 and splits.class_names[99] == "f99"


def test_tinyimagenet_uses_official_val_as_test(tmp_path):
    make_tiny(tmp_path)
    splits = load_splits("tinyimagenet", str(tmp_path), val_fraction=0.2)
    assert splits.image_size == 64 and splits.num_classes == 3
    assert splits.sizes == {"train": 12, "val": 3, "test": 4}
    assert splits.test_labels.tolist() == [0, 1, 2, 0]
    assert splits.class_names == ("n001", "n002", "n003")
    assert sorted(splits.val_labels.tolist()) == [0, 1, 2]  # stratified


def test_folder_flat_tree_resized_with_fixed_test_share(tmp_path):
    make_folder(tmp_path)
    splits = load_splits("folder", str(tmp_path), image_size=16)
    assert splits.image_size == 16 and splits.class_names == ("cat", "dog")
    assert sum(splits.sizes.values()) == 14 and splits.sizes["test"] == 3
    again = load_splits("folder", str(tmp_path), image_size=16, seed=5)
    assert torch.equal(splits.test_images, again.test_images)  # test share does not follow the seed


def test_folder_train_test_tree(tmp_path):
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "test", per_class=2)
    splits = load_splits("folder", str(tmp_path))
    assert splits.sizes["test"] == 4 and splits.sizes["train"] + splits.sizes["val"] == 14
    assert splits.test_labels.tolist() == [0, 0, 1, 1]
    only_train = tmp_path / "only"
    make_folder(only_train / "train")
    assert load_splits("folder", str(only_train)).sizes["test"] == 0  # no test/: empty test split


def test_digits_and_config_entry_point():
    splits = load_splits_from_config(DataConfig(), seed=0)
    assert splits.name == "digits" and splits.image_size == 32 and splits.num_classes == 10
    assert sum(splits.sizes.values()) == 1797
    assert splits.sizes["test"] == 360
    assert torch.equal(splits.train_images[:, 0], splits.train_images[:, 2])  # grey as RGB


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "tinyimagenet", "folder"])
def test_missing_and_malformed_paths_name_the_path(tmp_path, dataset):
    with pytest.raises(DataError, match="data.path is required"):
        load_splits(dataset, None)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        load_splits(dataset, str(missing))
    assert str(missing) in str(error.value) and "expected" in str(error.value)
    wrong = tmp_path / "wrong"
    (wrong / "junk").mkdir(parents=True)
    (wrong / "readme.txt").write_text("not a data set")
    with pytest.raises(DataError) as error:
        load_splits(dataset, str(wrong))
    message = str(error.value)
    assert str(wrong) in message and "expected" in message and "\n" not in message


def test_corrupt_and_foreign_files_are_data_errors(tmp_path):
    folder = make_cifar10(tmp_path / "a")
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_splits("cifar10", str(folder))

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    folder = make_cifar10(tmp_path / "b")
    _dump(folder / "test_batch", {b"data": Evil()})
    with pytest.raises(DataError, match="test_batch"):
        load_splits("cifar10", str(folder))

    folder = make_cifar10(tmp_path / "c")
    _dump(folder / "data_batch_1", {b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0] * 4})
    with pytest.raises(DataError, match="N x 3072"):
        load_splits("cifar10", str(folder))


def test_undecodable_folder_file_is_skipped_with_one_warning(tmp_path, caplog):
    root = make_folder(tmp_path / "d")
    whole = load_splits("folder", str(root))
    (root / "cat" / "broken.png").write_bytes(b"garbage")
    with caplog.at_level("WARNING"):
        splits = load_splits("folder", str(root))
    lines = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) == 1 and "skipped 1 " in lines[0] and "broken.png" in lines[0]
    assert sum(splits.sizes.values()) == sum(whole.sizes.values())


def test_tiny_annotation_naming_unknown_class(tmp_path):
    folder = make_tiny(tmp_path)
    with (folder / "val" / "val_annotations.txt").open("a") as handle:
        handle.write("val_0.JPEG\tn999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="val_annotations.txt line 5"):
        load_splits("tinyimagenet", str(tmp_path))


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown data set 'mnist'"):
        load_splits("mnist")


def test_folder_images_take_the_configured_size(tmp_path):
    """``data.image_size`` reaches the folder loader (it used to be ignored: always 32 px)."""
    from pipeline.config import load_config
    from pipeline.errors import ConfigError

    make_folder(tmp_path)
    config = load_config(overrides=["data.dataset=folder", f"data.path={tmp_path}", "data.image_size=20"])
    splits = load_splits_from_config(config.data)
    assert splits.image_size == 20 and tuple(splits.train_images.shape[1:]) == (3, 20, 20)
    assert load_splits_from_config(DataConfig(dataset="folder", path=str(tmp_path))).image_size == 32
    with pytest.raises(ConfigError, match="image_size"):
        load_config(overrides=["data.image_size=4"])
