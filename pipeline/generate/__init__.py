"""Generate: PNAG, a budget-conditioned generator of Pareto-optimal architectures.

- ``budget``: the budget scale (normalised costs) and budget parsing;
- ``predictors``: gene features, canonical architectures, accuracy and cost models;
- ``policy``: the LSTM policy and its REINFORCE trainer;
- ``ranker``: the Pareto-aware ranker R(arch | budget), trained with a pairwise ranking loss;
- ``fitted``: ``FittedGenerator``, what fitting produces and the one place budgets are answered;
- ``training``: ``PNAGTrainer`` and the two fits (on an evaluator, on a search archive);
- ``search_mode``: the experimental per-budget search mode, answering through the same generator;
- ``store``: the saved ``generator/`` directory;
- ``run_stage``: PNAG on a pipeline run's archive (the generate stage's body; paths injected);
- ``job_verbs``: ``jobs/generate.py``'s verbs, *fit* and *generate*.

Depends on ``pipeline.space``, ``pipeline.schema`` and the evaluator interface, never on
``supernet``, ``train`` or the run-directory layout (the stage layer passes paths in).
"""
