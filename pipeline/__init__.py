"""Distributed neural architecture search on Ray: OFAv2 supernet, NATv2 search, PNAG generation.

Import direction (see docs/design.md): ``space`` -> ``supernet`` -> ``train`` / ``evaluate``;
``search`` depends only on ``space`` and the evaluator interface in ``evaluate.interface``;
``cli`` (the jobs, ``python -m pipeline <job>``) depends on everything.
"""
