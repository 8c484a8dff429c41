"""User-facing error families. The CLI prints them as one line (``--debug`` shows the traceback)."""

from __future__ import annotations


class TuneforgeError(Exception):
    """Base class: a failure caused by user input or environment, with a readable message."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message + (f" ({hint})" if hint else ""))


class ConfigError(TuneforgeError):
    """Invalid config file, unknown key, wrong type or bad override."""


class DataError(TuneforgeError):
    """Malformed or unusable data; messages name file and line where known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, hint: str | None = None):
        self.file, self.line = file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message, hint=hint)


class ModelLoadError(TuneforgeError):
    """A model, tokenizer or adapter could not be loaded."""


class TrainingError(TuneforgeError):
    """Training had to stop (non-finite loss, broken resume state...)."""

    exit_code = 3


class LockedError(TuneforgeError):
    """An output directory is being written by another process (the message names it)."""


class TrainingInterrupted(TuneforgeError):
    """Training was asked to stop (SIGTERM/SIGINT from a scheduler) and saved a checkpoint to resume from."""

    exit_code = 143  # 128 + SIGTERM: what schedulers expect from a job that stopped on their signal
