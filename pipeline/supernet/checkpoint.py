"""Supernet checkpoints: one file with the weights and everything needed to rebuild the network.

The file is a ``torch.save`` of a plain dict: a format marker, the space options, the number of
classes, the dropout, the ``state_dict`` and an optional ``extra`` dict of plain values (phase,
epoch, ...). It is written atomically (temporary file, then ``os.replace``) and read with
``torch.load(weights_only=True)``, so a checkpoint cannot run code. Any missing, unreadable or
foreign file raises a one-line ``CheckpointError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.atomic import atomic_path
from pipeline.errors import CheckpointError, ConfigError
from pipeline.supernet.builder import build_supernet
from pipeline.supernet.network import OFAv2Supernet

FORMAT = "ofav2-supernet/1"


ADAPTATION_ROUND_KEY = "adaptation_round"


def adaptation_round(extra: dict[str, Any]) -> int:
    """The search-time adaptation round a checkpoint's ``extra`` records (0: as trained)."""
    return int(extra.get(ADAPTATION_ROUND_KEY, 0))


def save_supernet(path: str | Path, net: OFAv2Supernet, extra: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (weights, space options, classes, dropout) and ``extra`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "space": net.space.options(),
        "num_classes": net.num_classes,
        "dropout": net.dropout,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},  # never channels_last
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_supernet(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[OFAv2Supernet, dict[str, Any]]:
    """Rebuild the supernet saved at ``path``; returns ``(net, extra)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"supernet checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"supernet checkpoint {path} is unreadable ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an OFAv2 supernet checkpoint (format {FORMAT!r} expected)")
    try:
        net = build_supernet(payload["space"], int(payload["num_classes"]), float(payload["dropout"]))
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"supernet checkpoint {path} does not match its network: {first_line}") from None
    return net.to(map_location), dict(payload.get("extra") or {})
