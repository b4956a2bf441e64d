"""Bench: the measurement code behind ``jobs/bench_*.py``.

- ``search``: search strategies on a NATS-Bench table (HV ratio against the true front);
- ``generation``: PNAG against archive and random picks (regret per budget);
- ``supernet``: supernet against extracted static subnet (step and inference time ratios);
- ``ofav2``: the OFAv2 variant ablation and 2-worker training throughput.

Sits above the other packages, like ``stages``; nothing in ``pipeline`` imports it.
"""
