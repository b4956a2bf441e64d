"""Bench: the measurement code behind ``jobs/bench_*.py``.

- ``search``: search strategies on a NATS-Bench table (HV ratio against the true front);
- ``generation``: PNAG against archive and random picks (regret per budget);
- ``supernet``: supernet against extracted static subnet (step and inference time ratios);
- ``ofav2``: the OFAv2 variant ablation and 2-worker training throughput;
- ``precision_fronts``: NATv2 on fp32 against INT8 latency, the two fronts compared in (top-1, INT8 latency);
- ``scaling``, ``latency``, ``archive``, ``dispatch``: the evaluation benchmark (``jobs/bench_eval.py``):
  evaluator scaling and its profile, latency repeatability and the search predictor's held-out
  error, archive ingest at scale, dispatch overhead.

Sits above the other packages, like ``stages``; nothing in ``pipeline`` imports it.
"""
