"""OFA's published MobileNetV3 supernets: read one into an ``OFAv2Supernet``, and write one back.

OFA publishes ``ofa_mbv3_d234_e346_k357_w1.0`` and ``..._w1.2`` (ImageNet, 1,000 classes), files
that OFA's model zoo reads as ``torch.load(path)["state_dict"]``. Their layout is that of OFA's
``OFAMobileNetV3`` (ofa 0.1.0.post202307202001), and this project's single-exit, plain-block
supernet (``SE_B``) has the same tensors under other names:

=====================================================  ==========================================
OFA key                                                 this project
=====================================================  ==========================================
``first_conv.{conv,bn}``                                ``stem.{0,1}``
``blocks.0.conv.{depth_conv,point_linear}.{conv,bn}``   ``first_block.branches.0.{depthwise,project}.{0,1}``
``blocks.N.conv.inverted_bottleneck.{conv.conv,bn.bn}`` ``stages.S.B.mbconv.{expand_conv,expand_bn}``
``blocks.N.conv.depth_conv.conv.conv.weight`` (7x7)     ``stages.S.B.mbconv.depthwise.weight``
``blocks.N.conv.depth_conv.conv.{a}to{b}_matrix``       ``stages.S.B.mbconv.depthwise.transform_{a}to{b}`` (transposed)
``blocks.N.conv.depth_conv.bn.bn``                      ``stages.S.B.mbconv.depthwise_bn``
``blocks.N.conv.depth_conv.se.fc.{reduce,expand}``      ``stages.S.B.mbconv.se.{reduce,expand}``
``blocks.N.conv.point_linear.{conv.conv,bn.bn}``        ``stages.S.B.mbconv.{project_conv,project_bn}``
``final_expand_layer.{conv,bn}`` (BN, h-swish)          ``heads.0.expand.{0,1}``
``feature_mix_layer.conv`` (no BN, h-swish)             ``heads.0.mix``
``classifier.linear``                                   ``heads.0.classifier``
=====================================================  ==========================================

with ``N = 1 + 4 * S + B`` (stage S, slot B, both 0-based). Three facts are not names:

- **Kernel matrices.** OFA's ``DynamicSeparableConv2d.get_active_filter`` applies its matrix as
  ``F.linear(centre, M)``, i.e. ``centre @ M.T``; ``ElasticDepthwiseKernel`` computes
  ``centre @ M``, so each matrix is transposed on the way in and out.
- **SE squeeze width.** Both take ``make_divisible(active_hidden // 4)`` channels of the same
  ``reduce``/``expand`` tensors, so no re-indexing is needed.
- **BatchNorm.** OFA's ``bn_param`` is (momentum 0.1, eps 1e-5); the file does not carry it, and
  the project's BN uses the same values (``check_bn_settings``).

What the file does not say, OFA's file name does (``d234_e346_k357_w1.2``): the smaller depth and
expand choices. They are read from the name when it has that pattern, else OFA's published lists
(d 2,3,4; e 3,4,6) are used; either way the largest depth, the largest expand ratio, the kernel
set, the width multiplier and the classes are inferred from the tensors and every source that
states them must agree (``OFAImportError`` otherwise).
"""

from __future__ import annotations

import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import CheckpointError
from pipeline.space.ofav2 import MAX_BLOCKS_PER_STAGE, NUM_STAGES
from pipeline.supernet.builder import build_supernet
from pipeline.supernet.dynamic_ops import make_divisible
from pipeline.supernet.network import HEAD_EXPAND, HEAD_FEATURES, STAGE_SE, STEM_WIDTH, OFAv2Supernet

#: OFA MobileNetV3's base widths (stem, five stages, final expand, feature mix)
OFA_STAGE_WIDTHS = (24, 40, 80, 112, 160)
OFA_FINAL_EXPAND_WIDTH = 960
OFA_FEATURE_MIX_WIDTH = 1280
#: OFA's ImageNet resolutions, 128 to 224 in steps of 4
OFA_RESOLUTIONS = tuple(range(128, 225, 4))
#: OFA's published choice lists (``d234_e346_k357``)
OFA_DEPTHS = (2, 3, 4)
OFA_EXPANDS = (3, 4, 6)
#: OFA's BatchNorm settings (``bn_param=(0.1, 1e-5)``)
OFA_BN_MOMENTUM = 0.1
OFA_BN_EPS = 1e-5

_NAME_PATTERN = re.compile(r"d(\d+)_e(\d+)_k(\d+)_w(\d+(?:\.\d+)?)")
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: globals a plain tensor checkpoint refers to (torch's own rebuild functions and storages)
_SAFE_GLOBALS = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.dict", "builtins.list")
_MATRIX_KEY = re.compile(r"^blocks\.(\d+)\.conv\.depth_conv\.conv\.(\d)to(\d)_matrix$")


class OFAImportError(CheckpointError):
    """An OFA supernet file that cannot be imported (or a config that contradicts it)."""


@dataclass(frozen=True)
class OFALayout:
    """What an OFA MobileNetV3 file holds, and where each choice list came from."""

    width_mult: float
    kernel_choices: tuple[int, ...]
    expand_choices: tuple[int, ...]
    depth_choices: tuple[int, ...]
    num_classes: int
    sources: dict[str, str] = field(default_factory=dict)  # field -> "tensors", "file name", "config", ...

    def space_options(self, resolutions: tuple[int, ...] = OFA_RESOLUTIONS) -> dict[str, Any]:
        """The ``supernet`` section (space options) of this file: OFA's variant, no OFAv2 additions."""
        return {
            "early_exits": False, "dense_skips": False, "parallel_blocks": False,
            "width_mult": self.width_mult,
            "kernel_choices": list(self.kernel_choices), "expand_choices": list(self.expand_choices),
            "depth_choices": list(self.depth_choices), "resolutions": list(resolutions),
            "stage_widths": list(OFA_STAGE_WIDTHS),
        }


# ---------------------------------------------------------------------------------- reading
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a torch file holding ``{"state_dict": ...}`` or a bare state dict.

    Read with ``weights_only=True``: a file that would run code when unpickled is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise OFAImportError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        with warnings.catch_warnings():  # torch warns about a non-torch pickle protocol before refusing it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        foreign = [name for name in (_pickled_globals(path) or []) if not name.startswith(_SAFE_GLOBALS)]
        if foreign:
            raise OFAImportError(f"{path} holds pickled Python objects besides tensors ({foreign[0]}), which could "
                                 "run code when loaded; refused (only tensors are read)") from None
        raise OFAImportError(f"{path} is not a readable torch file (truncated or corrupt?)") from None
    except Exception as exc:  # noqa: BLE001 - zip, EOF and format errors are all the same user error
        raise OFAImportError(f"{path} is not a readable torch file (truncated or corrupt?: {type(exc).__name__})") \
            from None
    if isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    if not isinstance(payload, Mapping) or not payload:
        raise OFAImportError(f"{path} holds no state dict (neither {{'state_dict': ...}} nor a mapping of tensors)")
    state = {str(k): v for k, v in payload.items()}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OFAImportError(f"{path}: the state dict holds values that are not tensors")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _pickled_globals(path: Path) -> list[str] | None:
    """``module.name`` of every global a torch file's pickle refers to; None when it is no readable pickle.

    Read with ``pickletools`` (nothing is executed), to tell a file that would run code from a
    corrupt one after ``weights_only`` refused it.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return None
                data = archive.read(name)
        else:
            data = path.read_bytes()
        found: list[str] = []
        strings: list[str] = []
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(argument).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL":
                found.append(".".join(strings[-2:]))
            elif isinstance(argument, str):
                strings.append(argument)
        return found
    except Exception:  # noqa: BLE001 - any failure to parse means "not a readable pickle"
        return None


def _not_mobilenet_v3(state: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``state`` is not an OFA MobileNetV3 supernet (naming OFA's other supernets), or None."""
    if any(k.startswith("input_stem.") for k in state):
        return "it looks like OFA's ResNet-50 supernet (ofa_resnet50)"
    if "feature_mix_layer.bn.weight" in state and "final_expand_layer.conv.weight" not in state:
        return "it looks like OFA's ProxylessNAS supernet (ofa_proxyless_d234_e346_k357_w1.3: ReLU6, no SE)"
    needed = ("first_conv.conv.weight", "blocks.0.conv.depth_conv.conv.weight", "final_expand_layer.conv.weight",
              "feature_mix_layer.conv.weight", "classifier.linear.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        return f"it has no '{missing[0]}'"
    return None


def _block_count(state: Mapping[str, torch.Tensor]) -> int:
    indices = {int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    return max(indices) + 1 if indices else 0


def _name_hint(name: str) -> dict[str, Any]:
    """Choice lists stated by an OFA file name (``..._d234_e346_k357_w1.2``), if it has that pattern."""
    match = _NAME_PATTERN.search(name)
    if match is None:
        return {}
    depths, expands, kernels, width = match.groups()
    return {"depth_choices": tuple(sorted(int(c) for c in depths)),
            "expand_choices": tuple(sorted(int(c) for c in expands)),
            "kernel_choices": tuple(sorted(int(c) for c in kernels)), "width_mult": float(width)}


def _elastic_key(stage: int, slot: int) -> str:
    return f"blocks.{1 + stage * MAX_BLOCKS_PER_STAGE + slot}.conv"


def _infer_width(state: Mapping[str, torch.Tensor]) -> float:
    """The width multiplier whose OFA widths are exactly the tensors' widths."""
    width = state["feature_mix_layer.conv.weight"].shape[0] / OFA_FEATURE_MIX_WIDTH
    width = round(width, 4)
    expected = {
        "first_conv": make_divisible(STEM_WIDTH * width),
        "final_expand_layer": make_divisible(OFA_FINAL_EXPAND_WIDTH * width),
    }
    found = {"first_conv": state["first_conv.conv.weight"].shape[0],
             "final_expand_layer": state["final_expand_layer.conv.weight"].shape[0]}
    for stage, base in enumerate(OFA_STAGE_WIDTHS):
        key = f"{_elastic_key(stage, 0)}.point_linear.conv.conv.weight"
        expected[f"stage {stage + 1}"] = make_divisible(base * width)
        found[f"stage {stage + 1}"] = state[key].shape[0] if key in state else -1
    wrong = [name for name in expected if expected[name] != found[name]]
    if wrong:
        name = wrong[0]
        raise OFAImportError(f"the tensors' widths match no OFA width multiplier: {name} has {found[name]} channels, "
                             f"width {width:g} would give {expected[name]}")
    last = make_divisible(OFA_STAGE_WIDTHS[-1] * width)
    if (HEAD_EXPAND * last, HEAD_FEATURES * last) != (expected["final_expand_layer"], make_divisible(
            OFA_FEATURE_MIX_WIDTH * width)):
        raise OFAImportError(f"width {width:g}: OFA's head widths differ from this project's {HEAD_EXPAND}C/"
                             f"{HEAD_FEATURES}C head, so this width cannot be imported")
    return width


def _infer_kernels(state: Mapping[str, torch.Tensor], blocks: int) -> tuple[int, ...]:
    """The kernel set: the stored kernel size plus every matrix's target size, the same in every block."""
    per_block: dict[int, set[int]] = {}
    for key, tensor in state.items():
        match = _MATRIX_KEY.match(key)
        if match:
            index, larger, smaller = (int(g) for g in match.groups())
            if tuple(tensor.shape) != (smaller * smaller, smaller * smaller):
                raise OFAImportError(f"'{key}' has shape {tuple(tensor.shape)}, not {smaller**2}x{smaller**2}")
            per_block.setdefault(index, set()).add(smaller)
    sets = set()
    for index in range(1, blocks):
        weight = state.get(f"blocks.{index}.conv.depth_conv.conv.conv.weight")
        if weight is None:
            raise OFAImportError(f"block {index} has no elastic depthwise kernel (blocks.{index}.conv.depth_conv."
                                 "conv.conv.weight); not an OFA MobileNetV3 supernet")
        sets.add(frozenset(per_block.get(index, set()) | {int(weight.shape[-1])}))
    if len(sets) != 1:
        raise OFAImportError("the blocks' kernel sets differ; not an OFA MobileNetV3 supernet")
    return tuple(sorted(next(iter(sets))))


def _infer_max_expand(state: Mapping[str, torch.Tensor], blocks: int) -> int:
    """The largest expand ratio: hidden = make_divisible(in * e) for one e in every block."""
    ratios = set()
    for index in range(1, blocks):
        weight = state[f"blocks.{index}.conv.inverted_bottleneck.conv.conv.weight"]
        hidden, in_channels = int(weight.shape[0]), int(weight.shape[1])
        ratio = round(hidden / in_channels)
        if make_divisible(in_channels * ratio) != hidden:
            raise OFAImportError(f"block {index}: {hidden} hidden channels for {in_channels} inputs is no integer "
                                 "expand ratio; not an OFA MobileNetV3 supernet")
        ratios.add(ratio)
    if len(ratios) != 1:
        raise OFAImportError(f"the blocks' largest expand ratios differ ({sorted(ratios)}); not an OFA supernet")
    return ratios.pop()


def _check_se(state: Mapping[str, torch.Tensor]) -> None:
    for stage in range(NUM_STAGES):
        has_se = f"{_elastic_key(stage, 0)}.depth_conv.se.fc.reduce.weight" in state
        if has_se != STAGE_SE[stage]:
            raise OFAImportError(f"stage {stage + 1} {'has' if has_se else 'lacks'} squeeze-and-excitation; "
                                 "not an OFA MobileNetV3 supernet")


def _choice(name: str, inferred: Any, stated: Mapping[str, Any], sources: dict[str, str],
            published: Any = None) -> Any:
    """Reconcile a choice inferred from the tensors with the values the file name and the config state.

    With ``published`` (OFA's list), the tensors give only the list's maximum, and the list comes
    from the config, else the file name, else ``published``; every stated value must agree with
    the tensors either way."""
    only_max = published is not None
    chosen, source = (published, "OFA's published lists") if only_max else (inferred, "tensors")
    for origin in ("file name", "config"):
        value = stated.get(origin, {}).get(name)
        if value is None:
            continue
        agrees = (max(value) == inferred) if only_max else (value == inferred)
        if not agrees:
            shown = f"largest {inferred}" if only_max else f"{inferred}"
            raise OFAImportError(f"supernet.{name} is {value} in the {origin} but the file's tensors say {shown}")
        if only_max:
            chosen, source = value, origin
    if only_max and max(chosen) != inferred:
        raise OFAImportError(f"the file's largest {name.split('_')[0]} is {inferred}; state supernet.{name} "
                             f"(e.g. --set supernet.{name}=[...,{inferred}])")
    sources[name] = source if not only_max else f"largest from the tensors, list from {source}"
    return chosen


def infer_layout(state: Mapping[str, torch.Tensor], file_name: str = "",
                 requested: Mapping[str, Any] | None = None) -> OFALayout:
    """Width, kernel / expand / depth choices and classes of an OFA MobileNetV3 state dict.

    ``requested`` holds the ``supernet`` values a user set explicitly (config file or ``--set``);
    each must agree with the tensors (and with the file name, when it states them).
    """
    reason = _not_mobilenet_v3(state)
    if reason is not None:
        raise OFAImportError(f"not an OFA MobileNetV3 supernet; {reason}")
    blocks = _block_count(state)
    if blocks < 1 + NUM_STAGES or (blocks - 1) % NUM_STAGES:
        raise OFAImportError(f"{blocks - 1} elastic blocks cannot form {NUM_STAGES} stages; not an OFA MobileNetV3 "
                             "supernet")
    max_depth = (blocks - 1) // NUM_STAGES
    if max_depth != MAX_BLOCKS_PER_STAGE:
        raise OFAImportError(f"{max_depth} blocks per stage; this project's supernet has {MAX_BLOCKS_PER_STAGE}")
    width = _infer_width(state)
    kernels = _infer_kernels(state, blocks)
    max_expand = _infer_max_expand(state, blocks)
    _check_se(state)
    stated = {"file name": _name_hint(file_name), "config": dict(requested or {})}
    sources: dict[str, str] = {"num_classes": "tensors"}
    width_mult = _choice("width_mult", width, stated, sources)
    kernel_choices = _choice("kernel_choices", kernels, stated, sources)
    expands = _choice("expand_choices", max_expand, stated, sources, published=OFA_EXPANDS)
    depths = _choice("depth_choices", max_depth, stated, sources, published=OFA_DEPTHS)
    return OFALayout(float(width_mult), tuple(kernel_choices), tuple(sorted(expands)), tuple(sorted(depths)),
                     int(state["classifier.linear.weight"].shape[0]), sources)


# ---------------------------------------------------------------------------------- the key map
def _bn_pairs(project: str, ofa: str) -> Iterator[tuple[str, str, bool]]:
    for name in _BN_FIELDS:
        yield f"{project}.{name}", f"{ofa}.{name}", False


def key_pairs(net: OFAv2Supernet) -> list[tuple[str, str, bool]]:
    """``(project key, OFA key, transposed)`` for every tensor of a single-exit, plain-block supernet."""
    if net.space.early_exits or net.space.parallel_blocks:
        raise OFAImportError(f"OFA's layout has one exit and plain blocks; a {net.space.variant_name} supernet "
                             "has more (export an SE_B supernet)")
    pairs: list[tuple[str, str, bool]] = [("stem.0.weight", "first_conv.conv.weight", False)]
    pairs += _bn_pairs("stem.1", "first_conv.bn")
    first = "first_block.branches.0"
    pairs.append((f"{first}.depthwise.0.weight", "blocks.0.conv.depth_conv.conv.weight", False))
    pairs += _bn_pairs(f"{first}.depthwise.1", "blocks.0.conv.depth_conv.bn")
    pairs.append((f"{first}.project.0.weight", "blocks.0.conv.point_linear.conv.weight", False))
    pairs += _bn_pairs(f"{first}.project.1", "blocks.0.conv.point_linear.bn")
    for stage, blocks in enumerate(net.stages):
        for slot, block in enumerate(blocks):
            mine, ofa = f"stages.{stage}.{slot}.mbconv", _elastic_key(stage, slot)
            pairs.append((f"{mine}.expand_conv.weight", f"{ofa}.inverted_bottleneck.conv.conv.weight", False))
            pairs += _bn_pairs(f"{mine}.expand_bn", f"{ofa}.inverted_bottleneck.bn.bn")
            pairs.append((f"{mine}.depthwise.weight", f"{ofa}.depth_conv.conv.conv.weight", False))
            sizes = sorted(block.mbconv.depthwise.kernel_sizes, reverse=True)
            for larger, smaller in zip(sizes, sizes[1:]):
                pairs.append((f"{mine}.depthwise.transform_{larger}to{smaller}",
                              f"{ofa}.depth_conv.conv.{larger}to{smaller}_matrix", True))
            pairs += _bn_pairs(f"{mine}.depthwise_bn", f"{ofa}.depth_conv.bn.bn")
            if block.mbconv.se is not None:
                for part in ("reduce", "expand"):
                    for name in ("weight", "bias"):
                        pairs.append((f"{mine}.se.{part}.{name}", f"{ofa}.depth_conv.se.fc.{part}.{name}", False))
            pairs.append((f"{mine}.project_conv.weight", f"{ofa}.point_linear.conv.conv.weight", False))
            pairs += _bn_pairs(f"{mine}.project_bn", f"{ofa}.point_linear.bn.bn")
    pairs.append(("heads.0.expand.0.weight", "final_expand_layer.conv.weight", False))
    pairs += _bn_pairs("heads.0.expand.1", "final_expand_layer.bn")
    pairs.append(("heads.0.mix.weight", "feature_mix_layer.conv.weight", False))
    pairs += [("heads.0.classifier.weight", "classifier.linear.weight", False),
              ("heads.0.classifier.bias", "classifier.linear.bias", False)]
    return pairs


def check_bn_settings(net: nn.Module) -> None:
    """Every BN of ``net`` uses OFA's momentum and eps (the file does not carry them)."""
    for name, module in net.named_modules():
        if isinstance(module, nn.BatchNorm2d) and (module.eps != OFA_BN_EPS or module.momentum != OFA_BN_MOMENTUM):
            raise OFAImportError(f"BN '{name}' has eps {module.eps} / momentum {module.momentum}; OFA's are "
                                 f"{OFA_BN_EPS} / {OFA_BN_MOMENTUM}")


def supernet_from_ofa(state: Mapping[str, torch.Tensor], layout: OFALayout,
                      resolutions: tuple[int, ...] = OFA_RESOLUTIONS, dropout: float = 0.1) -> OFAv2Supernet:
    """The ``SE_B`` supernet holding exactly ``state``'s tensors (every OFA key used, every tensor set)."""
    net = build_supernet(layout.space_options(resolutions), layout.num_classes, dropout=dropout)
    check_bn_settings(net)
    target = net.state_dict()
    pairs = key_pairs(net)
    unused = sorted(set(state) - {ofa for _, ofa, _ in pairs})
    if unused:
        raise OFAImportError(f"the file holds {len(unused)} tensor(s) an OFA MobileNetV3 supernet does not, e.g. "
                             f"'{unused[0]}'")
    loaded: dict[str, torch.Tensor] = {}
    for mine, ofa, transposed in pairs:
        if ofa not in state:
            raise OFAImportError(f"the file lacks '{ofa}'")
        tensor = state[ofa].t() if transposed else state[ofa]
        if tuple(tensor.shape) != tuple(target[mine].shape):
            raise OFAImportError(f"'{ofa}' has shape {tuple(state[ofa].shape)}; this supernet needs "
                                 f"{tuple(target[mine].shape)}")
        loaded[mine] = tensor.to(target[mine].dtype).contiguous()
    net.load_state_dict(loaded, strict=True)
    return net.eval()


def ofa_state_dict(net: OFAv2Supernet) -> dict[str, torch.Tensor]:
    """``net``'s tensors in OFA's layout (what ``OFAMobileNetV3.load_state_dict`` accepts)."""
    check_bn_settings(net)
    own = net.state_dict()
    return {ofa: (own[mine].t() if transposed else own[mine]).detach().cpu().contiguous().clone()
            for mine, ofa, transposed in key_pairs(net)}


def import_ofa_file(path: str | Path, requested: Mapping[str, Any] | None = None,
                    resolutions: tuple[int, ...] = OFA_RESOLUTIONS, dropout: float = 0.1,
                    ) -> tuple[OFAv2Supernet, OFALayout]:
    """Read an OFA MobileNetV3 supernet file into an ``SE_B`` supernet; see the module docstring."""
    state = read_state_dict(path)
    layout = infer_layout(state, Path(path).name, requested)
    return supernet_from_ofa(state, layout, resolutions, dropout), layout
