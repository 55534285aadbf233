"""Fixtures for the engine suite: every contract test runs against both books.

The compiled parameter FAILS when ``matching._book`` did not load, so a missing or broken build can
never pass silently as "the reference book passed". The one exception is an explicit build without
extensions (``VENUE_NO_EXTENSIONS=1``, the switch ``setup.py`` reads): then the compiled parameter
is skipped and ``test_implementation.py`` checks that the fallback is the reported one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

import matching

# Same spellings setup.py accepts for building without the extension.
NO_EXTENSIONS = os.environ.get("VENUE_NO_EXTENSIONS", "") in ("1", "true", "yes")

BookFactory = Callable[[], Any]


def compiled_book_class() -> type:
    """The compiled ``OrderBook`` class; fails the test if it did not load, unless opted out."""
    if NO_EXTENSIONS:
        pytest.skip("built without extensions (VENUE_NO_EXTENSIONS=1): no compiled book to test")
    if matching.COMPILED_IMPORT_ERROR is not None:
        pytest.fail(
            "the compiled book matching._book did not load "
            f"({matching.COMPILED_IMPORT_ERROR!r}); build it with "
            "`python setup.py build_ext --inplace` or set VENUE_NO_EXTENSIONS=1 deliberately",
            pytrace=False,
        )
    from matching._book import OrderBook

    return OrderBook


def reference_book_class() -> type:
    return matching.ReferenceOrderBook


IMPLEMENTATIONS = {"reference": reference_book_class, "compiled": compiled_book_class}


class CheckedBook:
    """Wraps a book and runs ``validate()`` after every command (and on creation).

    Queries pass straight through. ``raw`` is the wrapped book, for ``restore`` and type checks.
    """

    def __init__(self, book: Any) -> None:
        self.raw = book
        book.validate()

    def _checked(self, events: list) -> list:
        self.raw.validate()
        return events

    def submit(self, *args: Any, **kwargs: Any) -> list:
        return self._checked(self.raw.submit(*args, **kwargs))

    def cancel(self, order_id: Any) -> list:
        return self._checked(self.raw.cancel(order_id))

    def replace(self, order_id: Any, price: Any, qty: Any) -> list:
        return self._checked(self.raw.replace(order_id, price, qty))

    def expire_day(self) -> list:
        return self._checked(self.raw.expire_day())

    def __len__(self) -> int:
        return len(self.raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def book_class(request: pytest.FixtureRequest) -> type:
    """The ``OrderBook`` class under test: ``reference`` and ``compiled``."""
    return IMPLEMENTATIONS[request.param]()


@pytest.fixture
def book(book_class: type) -> CheckedBook:
    """An empty book of the implementation under test, validated after every command."""
    return CheckedBook(book_class())


@pytest.fixture
def make_book(book_class: type) -> Callable[[], CheckedBook]:
    """Factory for extra empty books of the implementation under test."""
    return lambda: CheckedBook(book_class())
