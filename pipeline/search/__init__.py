"""Search: NATv2, surrogates, survival, the archive actor and Pareto utilities.

Depends only on ``pipeline.space``, ``pipeline.schema`` and the evaluator interface
(``pipeline.evaluate.interface``); never on ``supernet``, ``train`` or ``generate``.
"""
