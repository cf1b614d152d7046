"""Exceptions that mean "the user asked for something wrong".

The CLI prints a `QuantlensError` as one line and exits with code 2. Anything else that escapes
is a bug in quantlens and is allowed to show its traceback.
"""


class QuantlensError(Exception):
    """A user mistake (bad path, bad config, bad checkpoint): one line, exit code 2."""


class ConfigError(QuantlensError):
    """A config file or option is invalid; the message names the field."""


class DataError(QuantlensError):
    """A dataset cannot be read; the message names the file or folder."""


class ModelError(QuantlensError):
    """A model cannot be built or is incompatible with its input."""


class CheckpointError(QuantlensError):
    """A checkpoint cannot be loaded safely or does not fit the model."""


class UnknownNameError(QuantlensError):
    """A name is not in a registry; the message lists close matches."""


def describe(exc: BaseException) -> str:
    """'TypeName: first line of the message' (the type name alone for an empty message): an
    exception from a library or a user's code, fit for a one-line report."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def naming_field(field: str, exc: QuantlensError) -> QuantlensError:
    """The same error, of the same type, with its message led by the config field it concerns."""
    text = str(exc)
    return type(exc)(text if text.startswith(f"{field}:") else f"{field}: {text}")
