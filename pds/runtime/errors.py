"""One error type for bad user input: one line naming the field, the value and what is allowed."""

from typing import Any


class ConfigError(ValueError):
    """Invalid configuration or input. ``main.py`` prints ``str(err)`` and exits with code 2."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"invalid {field}={value!r}: {allowed}")


class RunError(RuntimeError):
    """A run that cannot give a truthful result (NaN or infinity in the samples, the loss or
    the parameters). ``main.py`` prints ``str(err)`` on one line and exits with code 1."""


def check_choice(field: str, value: Any, choices) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(field, value, "allowed: " + ", ".join(repr(c) for c in choices))


def positive_int(field: str, value: Any) -> int:
    """``value`` as an int; :class:`ConfigError` unless it is an integer >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, value, 'an integer >= 1')
    return int(value)
