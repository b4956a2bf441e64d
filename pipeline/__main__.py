"""``python -m pipeline <job> [arguments]``: run one job (``python -m pipeline --help`` lists them)."""

from pipeline.cli import main

main()
