"""User-facing error types.

Every error a user can cause (bad config, missing data, an architecture outside the space,
a corrupt checkpoint or Parquet file, an impossible budget) is raised as a ``PipelineError``
subclass with a one-line message that names the problem. Job entry points catch
``PipelineError``, print that one line and exit non-zero, with no traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error caused by user input; its message is one line."""


class ConfigError(PipelineError):
    """An unknown key, a wrong type or an out-of-range value in the configuration."""


class DataError(PipelineError):
    """A missing or malformed data path or table."""


class ArchitectureError(PipelineError):
    """An architecture that is not a member of its search space."""


class CheckpointError(PipelineError):
    """A checkpoint that cannot be read or belongs to another model."""


class BudgetError(PipelineError):
    """An empty, negative or unreachable budget list, or an unknown budget metric."""


class ProfileError(PipelineError):
    """An unknown hardware profile name or an unusable execution provider."""


class ResultsError(PipelineError):
    """A Parquet result file that is missing or corrupt."""


class ClusterError(PipelineError):
    """A Ray cluster address that does not answer or refuses this client."""
