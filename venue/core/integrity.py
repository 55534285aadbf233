"""Broken invariants: the venue's own bugs, never a participant's mistake.

:class:`IntegrityError` is raised where a check guards the venue's own bookkeeping (a
reservation that would go negative, an index out of step with the orders). It is an
``AssertionError`` by kind, but raised explicitly, so the checks still run under ``python -O``,
which strips ``assert`` statements.
"""


class IntegrityError(AssertionError):
    """An internal invariant does not hold: a bug, not bad input."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`IntegrityError` with ``message`` unless ``condition`` holds (for checks off
    the hot path: ``message`` is built before the call)."""
    if not condition:
        raise IntegrityError(message)
