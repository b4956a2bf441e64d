"""Generate: PNAG, a budget-conditioned generator of Pareto-optimal architectures.

- ``budget``: the budget scale (normalised costs) and budget parsing;
- ``policy``: the LSTM generator policy and its REINFORCE trainer;
- ``ranker``: the Pareto-aware ranker R(arch | budget), trained with a pairwise ranking loss;
- ``predictors``: accuracy and cost predictors fitted on measured architectures;
- ``engine``: PNAG itself, fitting the policy against the ranker;
- ``runs``: PNAG on an evaluator or on a run's archive.

Depends on ``pipeline.space``, ``pipeline.schema`` and the evaluator interface, never on
``supernet`` or ``train``.
"""
