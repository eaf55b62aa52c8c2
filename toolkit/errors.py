"""One base type for every error the user can fix (bad input, config, token, endpoint, repo).

``qup`` catches :class:`QupError` once and prints it as one line (exit code 2); everything else is
a bug and keeps its traceback. Each module defines its own subclass (``ConfigError``,
``SourceError``, ``PublishError``, ``EndpointError``, ``HubError``, ...), so library users can
catch one type or a precise one.

Example:
    >>> from toolkit.config import ConfigError
    >>> issubclass(ConfigError, QupError)
    True
"""


class QupError(Exception):
    """An error the user can fix; its message names what is wrong (file, row, field, parameter)."""
