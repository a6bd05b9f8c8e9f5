"""Counts as the inventory, the pipeline and the flags give them: a number of hosts (2) or a
percentage of a batch ('25%'). Its own module so the argument checks load without the pipeline."""

from .errors import ConfigError


def count_ok(value, allow_zero=False):
    """A positive count (2) or a percentage ('25%'); with allow_zero, 0 and '0%' too."""
    low = 0 if allow_zero else 1
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= low
    text = str(value)
    return text.endswith("%") and text[:-1].isdigit() and low <= int(text[:-1]) <= 100


def check_count(flag, value, allow_zero=False, hint=None):
    if not count_ok(value, allow_zero):
        raise ConfigError(f"bad {flag} value {value!r}", hint=hint)
