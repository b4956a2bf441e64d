"""INT8 quantisation with ONNX Runtime: a trained subnet keeps its predictions, the file is QDQ INT8."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from pipeline.data import eval_transform, load_splits
from pipeline.errors import ProfileError
from pipeline.quantize import agreement, convert_fp16, onnx_predictions, quantize_int8, top1
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet import OFAv2Supernet
from pipeline.supernet.export import export_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RESOLUTION = 32


@pytest.fixture(scope="module")
def digits_subnet(tmp_path_factory):
    """A small subnet trained for a few hundred steps on digits, exported with a free batch axis."""
    splits = load_splits("digits", seed=0)
    space = OFAv2Space(stage_widths=(8, 16, 24, 32, 40), resolutions=(RESOLUTION,), early_exits=False,
                       dense_skips=False)
    net = OFAv2Supernet(space, num_classes=splits.num_classes, seed=0)
    subnet = net.extract(space.smallest())
    images = eval_transform(splits.train_images, splits.mean, splits.std, RESOLUTION)
    labels = splits.train_labels
    optimiser = torch.optim.SGD(subnet.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    subnet.train()
    for _ in range(120):
        index = torch.randint(len(images), (64,), generator=generator)
        loss = F.cross_entropy(subnet(images[index]), labels[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    subnet.eval()
    folder = tmp_path_factory.mktemp("quantize")
    fp32 = export_onnx(subnet, folder / "fp32.onnx", RESOLUTION, batch_size=2, dynamic_batch=True)
    val = eval_transform(splits.val_images, splits.mean, splits.std, RESOLUTION).numpy()
    return subnet, fp32, images[:128].numpy(), val, splits.val_labels.numpy()


def test_int8_model_agrees_with_fp32_and_is_integer(digits_subnet, tmp_path):
    subnet, fp32, calibration, val, val_labels = digits_subnet
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", calibration)
    graph = onnx.load(str(int8)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert weights, "convolution weights are stored as INT8"
    scales = {t.name: t for t in graph.initializer}
    per_channel = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in
                   {w.name for w in weights} and len(scales[n.input[1]].dims) == 1]
    assert per_channel, "weights are quantised per output channel"
    fp32_predictions = onnx_predictions(fp32, calibration)
    with torch.no_grad():
        torch_predictions = subnet(torch.from_numpy(calibration)).argmax(1).numpy()
    assert np.array_equal(fp32_predictions, torch_predictions)
    int8_predictions = onnx_predictions(int8, calibration)
    assert agreement(int8_predictions, fp32_predictions) >= 95.0
    fp32_top1 = top1(onnx_predictions(fp32, val), val_labels)
    int8_top1 = top1(onnx_predictions(int8, val), val_labels)
    assert fp32_top1 > 60.0, "the subnet learned something (else agreement means little)"
    assert abs(fp32_top1 - int8_top1) < 10.0


def test_fixed_batch_model_and_too_few_images(digits_subnet, tmp_path):
    subnet, _, calibration, _, _ = digits_subnet
    fixed = export_onnx(subnet, tmp_path / "b4.onnx", RESOLUTION, batch_size=4)
    with pytest.raises(ProfileError, match="at least 4 images"):
        quantize_int8(fixed, tmp_path / "b4_int8.onnx", calibration[:3])
    assert not (tmp_path / "b4_int8.onnx").exists()
    int8 = quantize_int8(fixed, tmp_path / "b4_int8.onnx", calibration[:10])
    predictions = onnx_predictions(int8, calibration[:7])  # 7 = one full chunk of 4 and a padded one
    assert predictions.shape == (7,)


def test_fp16_model_keeps_float32_inputs_and_the_predictions(digits_subnet, tmp_path):
    _, fp32, calibration, val, _ = digits_subnet
    fp16 = convert_fp16(fp32, tmp_path / "fp16.onnx")
    graph = onnx.load(str(fp16)).graph
    weights = [t for t in graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert agreement(onnx_predictions(fp16, val), onnx_predictions(fp32, val)) >= 99.0
