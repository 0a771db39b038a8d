"""Exception types. Every user-facing failure raises a subclass of :class:`CkptError`
whose message names the offending file, checkpoint, column or parameter."""


class CkptError(Exception):
    """Base class: the CLI prints the message and exits with status 2."""


class CheckpointError(CkptError):
    """A checkpoint is missing, incomplete or corrupt."""


class UnsafeWeightsError(CheckpointError):
    """Weights are pickled (.bin/.pt) and the user did not opt in to unpickling."""


class TokenizerMismatchError(CheckpointError):
    """The tokenizer does not fit the model (vocabulary larger than the embedding)."""


class HubUnavailableError(CheckpointError):
    """A hub repo/revision cannot be reached or does not exist."""


class SourceError(CkptError):
    """A checkpoint source (folder, manifest, hub spec) cannot be resolved."""


class StoreError(CkptError):
    """The results store cannot be opened or a row is malformed."""


class StoreLockedError(StoreError):
    """Another process held the results store's lock for longer than the lock timeout.

    ``holder`` names it (``PID 123 (/usr/bin/python3)`` when DuckDB says); ``kept`` is the file
    in ``<store>.pending/`` holding the rows of the write that could not land, if any.
    """

    def __init__(self, message: str, holder: str = "another process", kept: object = None):
        super().__init__(message)
        self.holder = holder
        self.kept = kept


class TaskFileError(CkptError):
    """A task JSONL file violates the documented schema."""


class ImportFormatError(CkptError):
    """An imported results file (lm-eval JSON, CSV) is malformed."""


class ParameterError(CkptError):
    """A configuration, CLI or notebook parameter is unknown or has the wrong type."""
