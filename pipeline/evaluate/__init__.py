"""Evaluation: the evaluator interface, the table evaluator, and Ray evaluator/latency actors.

``interface`` and ``table`` import nothing from ``supernet``, so ``search`` may use them; the
actor modules depend on ``supernet`` and are imported only where needed.
"""
