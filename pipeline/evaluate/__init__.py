"""Evaluation: the evaluator interface, the table evaluator, and Ray evaluator/latency actors.

``interface`` (evaluators return results; ``ResultSink`` persists them), ``recording`` (results
into a sink as rows with their ``Provenance``) and ``table`` import nothing from ``supernet``, so
``search`` may use them; the actor modules depend on ``supernet`` and are imported only where
needed. Evaluators write nothing themselves; the run directory and the archive are handed in.
"""
