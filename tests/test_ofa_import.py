"""OFA's published supernets: the import computes OFA's function, export is its inverse, init_from grows OFAv2.

The expected logits come from OFA's own ``OFAMobileNetV3`` (the ``ofa`` package,
``pipeline/bench/ofa_reference.py``), never from this project's mapping: every tensor is random (kernel
matrices far from the identity, random BN statistics), the file is saved as OFA publishes it, and
each subnet's OFA forward (``set_active_subnet``, eval mode) is the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.bench.ofa_reference import ofa_mobilenet_v3, ofa_subnet_config
from pipeline.supernet.builder import build_supernet
from pipeline.supernet.checkpoint import save_supernet
from pipeline.supernet.init_from import describe, initialise_from
from pipeline.supernet.ofa_format import (
    OFA_RESOLUTIONS,
    OFAImportError,
    import_ofa_file,
    ofa_state_dict,
    read_state_dict,
)

CLASSES = 12
RESOLUTIONS = (128, 176, 224)


def _relative(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return float((expected - actual).abs().max() / expected.abs().max())


def _publish(tmp_path, net, width: float, bare: bool = False):
    path = tmp_path / f"ofa_mbv3_d234_e346_k357_w{width:g}"
    torch.save(net.state_dict() if bare else {"state_dict": net.state_dict()}, path)
    return path


def _subnets(space, count: int = 8) -> list[dict]:
    rng = np.random.default_rng(3)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(count - 2)]


@pytest.fixture(scope="module", params=[1.0, 1.2], ids=["w1.0", "w1.2"])
def published(request, tmp_path_factory):
    """OFA's network with random tensors, its file as OFA publishes it, and the imported supernet."""
    width = request.param
    reference = ofa_mobilenet_v3(CLASSES, width, seed=int(width * 10))
    path = _publish(tmp_path_factory.mktemp(f"ofa{width}"), reference, width)
    net, layout = import_ofa_file(path)
    return reference, net.eval(), layout, width


def test_the_layout_is_inferred_from_the_tensors(published):
    _, net, layout, width = published
    assert layout.width_mult == width
    assert (layout.kernel_choices, layout.expand_choices, layout.depth_choices) == ((3, 5, 7), (3, 4, 6), (2, 3, 4))
    assert layout.num_classes == CLASSES
    assert net.space.variant_name == "SE_B" and tuple(net.space.resolutions) == OFA_RESOLUTIONS


def test_imported_subnets_give_ofas_logits(published):
    """At least 8 subnets (largest and smallest included) at three resolutions: in-supernet and extracted."""
    reference, net, _, _ = published
    worst = 0.0
    for arch in _subnets(net.space):
        reference.set_active_subnet(**ofa_subnet_config(arch))
        net.set_active(arch)
        static = net.extract(arch).eval()
        for resolution in RESOLUTIONS:
            images = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(resolution))
            with torch.no_grad():
                expected = reference(images)
                worst = max(worst, _relative(expected, net(images)), _relative(expected, static(images)))
    assert worst < 1e-5


def test_a_bare_state_dict_imports_the_same(published, tmp_path):
    reference, net, _, width = published
    bare, _ = import_ofa_file(_publish(tmp_path, reference, width, bare=True))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), bare.state_dict().values()))


def test_export_is_what_ofa_loads_and_import_after_export_is_the_identity(published, tmp_path):
    reference, net, _, width = published
    exported = ofa_state_dict(net)
    original = reference.state_dict()
    assert set(exported) == set(original)
    assert all(torch.equal(exported[key], original[key]) for key in original)
    # a supernet trained here (not imported): export, import, same tensors; OFA's code loads the file
    own = build_supernet({"early_exits": False, "dense_skips": False, "width_mult": width}, CLASSES, seed=5)
    path = tmp_path / "exported"
    torch.save({"state_dict": ofa_state_dict(own)}, path)
    again, _ = import_ofa_file(path, resolutions=tuple(own.space.resolutions))
    assert all(torch.equal(a, b) for a, b in zip(own.state_dict().values(), again.state_dict().values()))
    loader = ofa_mobilenet_v3(CLASSES, width)
    loader.load_state_dict(read_state_dict(path), strict=True)
    arch = own.space.sample(np.random.default_rng(1))
    loader.set_active_subnet(**ofa_subnet_config(arch))
    own.eval().set_active(arch)
    images = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        assert _relative(loader(images), own(images)) < 1e-5


def test_init_from_keeps_the_trunks_function_and_names_what_starts_new(published, tmp_path):
    """An early-exit supernet initialised from the imported SE_B gives its last-exit logits (dense skips off)."""
    _, net, _, width = published
    source = tmp_path / "imported.pt"
    save_supernet(source, net)
    options = {**net.space.options(), "early_exits": True, "dense_skips": False}
    grown = build_supernet(options, CLASSES, seed=9).eval()
    match = initialise_from(grown, source)
    for arch in _subnets(net.space, 4):
        net.set_active(arch)
        grown.set_active({**arch, "exit": 5})
        images = torch.randn(2, 3, 128, 128)
        with torch.no_grad():
            assert _relative(net(images), grown(images)) < 1e-6
    lines = describe(match, source)
    assert any("exit 5 head" in line for line in lines[:1])
    assert [line for line in lines[1:] if "start new" in line] == [
        f"init_from: exit {n} head start new (9 tensors; not in the source)" for n in range(1, 5)]
    parallel = build_supernet({**options, "parallel_blocks": True}, CLASSES, seed=9)
    new_groups = " ".join(describe(initialise_from(parallel, source), source)[1:])
    assert "1x1 convolution branches start new" in new_groups and "transformation branches start new" in new_groups


def test_init_from_a_checkpoint_that_matches_nothing_is_refused(tmp_path):
    other = build_supernet({"width_mult": 2.0, "early_exits": False}, 5, seed=0)
    save_supernet(tmp_path / "wide.pt", other)
    target = build_supernet({"early_exits": True}, 5, seed=0)
    with pytest.raises(Exception, match="no tensor's name and shape match"):
        initialise_from(target, tmp_path / "wide.pt")


def test_a_file_name_that_contradicts_the_tensors_is_refused(tmp_path):
    reference = ofa_mobilenet_v3(CLASSES, 1.0)
    path = tmp_path / "ofa_mbv3_d234_e346_k357_w1.2"
    torch.save({"state_dict": reference.state_dict()}, path)
    with pytest.raises(OFAImportError, match="width_mult is 1.2 in the file name but the file's tensors say 1.0"):
        import_ofa_file(path)
