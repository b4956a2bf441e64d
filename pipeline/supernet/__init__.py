"""The OFAv2 supernet: dynamic ops, elastic blocks and network, subnet extraction, BN
recalibration, cost counting, ONNX export and checkpoints.

Depends only on ``pipeline.space`` (and ``pipeline.errors``). Modules:
``dynamic_ops`` (weight views, elastic kernel), ``layers`` (static building blocks),
``blocks`` (elastic blocks), ``network`` (``OFAv2Supernet``), ``builder`` (the one way to build
a space or supernet from ``config.supernet``, space options or a space), ``extract`` (static subnets),
``bn`` (recalibration), ``costs`` (params/MACs), ``export`` (ONNX + ONNX Runtime),
``checkpoint`` (save/load).
"""

from pipeline.supernet.network import OFAv2Supernet

__all__ = ["OFAv2Supernet"]
