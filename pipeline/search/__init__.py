"""Search: the archive actor and its Parquet schema, Pareto utilities, surrogates, NATv2 and PNAG.

Depends only on ``pipeline.space`` and the evaluator interface (``pipeline.evaluate.interface``).
"""
