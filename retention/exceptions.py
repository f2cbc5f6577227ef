"""Exceptions raised by retention.

Every error a user can cause is a :class:`RetentionError`; the CLI prints its message on one line
and exits non-zero, never a traceback. Messages say what was wrong, what was received and how to
fix it.

::

    RetentionError
     +-- DataError                 input data cannot be used as given
     |    +-- SchemaError          a required column is missing or has the wrong type
     |    +-- ReadError            a file cannot be read (missing, empty, undecodable)
     |    +-- QuarantineError      --strict and at least one row was quarantined
     |    +-- LeakageError         events at or after a cutoff reached a feature
     |    +-- InsufficientDataError  too few customers, retained/churned or days to learn from
     +-- ConfigError               a setting, mapping or argument is invalid
     |    +-- NotFoundError        what was asked for (a customer, a key, a job) is not there
     +-- NotFittedError            a model was used before ``fit``
     +-- ModelError                a model cannot be trained, saved or loaded
     |    +-- IncompatibleModelError  an artifact made by an incompatible version
     +-- StoreError                the DuckDB store cannot be opened or migrated

    UserWarning
     +-- RetentionWarning          a result was computed, but on terms the user should know:
                                   a degenerate or thin-data fit, a fallback, a value read as 0

A :class:`RetentionWarning` never stops a run: the CLI prints it as one line ``warning: ...`` on
stderr. To silence them on purpose:
``warnings.filterwarnings("ignore", category=RetentionWarning)``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "IncompatibleModelError",
    "InsufficientDataError",
    "LeakageError",
    "ModelError",
    "NotFittedError",
    "NotFoundError",
    "QuarantineError",
    "ReadError",
    "RetentionError",
    "RetentionWarning",
    "SchemaError",
    "StoreError",
]


class RetentionError(Exception):
    """Base class of every error retention raises on purpose."""


class DataError(RetentionError):
    """Input data cannot be used as given."""


class SchemaError(DataError):
    """A required column is missing or has the wrong type."""


class ReadError(DataError):
    """A file cannot be read: missing, empty, undecodable or of an unknown format."""


class QuarantineError(DataError):
    """``strict`` was set and at least one row was quarantined."""


class LeakageError(DataError):
    """Events at or after a cutoff would reach a feature or a model."""


class InsufficientDataError(DataError):
    """Too little data to learn from: too few customers, retained or churned customers at a
    learning cutoff, or days of history (see ``retention.features.MinData``)."""


class ConfigError(RetentionError):
    """A setting, a column mapping or an argument is invalid."""


class NotFoundError(ConfigError):
    """What was asked for (a customer, an API key, a job) is not in the store."""


class NotFittedError(RetentionError, ValueError, AttributeError):
    """A model was used before ``fit`` (also a scikit-learn ``NotFittedError`` look-alike)."""


class ModelError(RetentionError):
    """A model cannot be trained, saved or loaded."""


class IncompatibleModelError(ModelError):
    """A saved model was made by a version of retention this one cannot load."""


class StoreError(RetentionError):
    """The DuckDB store cannot be opened, migrated or written."""


class RetentionWarning(UserWarning):
    """A result was computed, but on terms the user should know about.

    Emitted, for example, when a BTYD fit ends on the optimiser's bounds (the model degenerates),
    when a model is fitted on too few repeat customers, when a Gamma-Gamma fit fails and a fallback
    is used, or when unreadable values are counted as 0.
    """
