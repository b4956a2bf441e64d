"""Search: NATv2 and the tools around it.

- ``natv2``: the ask/tell engine (``NATv2Engine``); ``settings``: its knobs, read from the ``search``
  config section; ``termination``: when to stop; ``engine_state``: its resumable state;
- ``driver``: ``SearchRunner``, the one ask -> evaluate -> tell loop with the run's callbacks, and
  ``run_search``; ``tune``: ``NATv2Search``, the engine as a Ray Tune searcher;
- ``surrogates``, ``surrogate_search``, ``selection``, ``survival``: NATv2's steps;
- ``archive_store`` / ``archive``: the archive (in process, or as the run's named actor);
  ``pareto``: non-dominated ranks, hypervolume, high-tradeoff points (pymoo underneath);
- ``files``: the names of what a search writes into the directory it is handed.

Depends only on ``pipeline.space``, ``pipeline.config``, ``pipeline.schema`` and the evaluator
interface and recorder (``pipeline.evaluate.interface``, ``.recording``); never on ``supernet``,
``train`` or ``generate``, nor on the stage layer (``run_dir``, ``results``, ``console``, ``runtime``).
"""
