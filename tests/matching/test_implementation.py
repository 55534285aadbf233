"""Which book is loaded: the compiled one must never be replaced by the fallback silently.

Without ``VENUE_NO_EXTENSIONS=1`` the compiled book must be the one ``matching.OrderBook`` names.
With it, the reference book is the explicit, reported choice.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import matching
from tests.matching.conftest import NO_EXTENSIONS

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(NO_EXTENSIONS, reason="built without extensions (VENUE_NO_EXTENSIONS=1)")
def test_compiled_book_is_loaded():
    assert matching.COMPILED_IMPORT_ERROR is None, (
        f"the compiled book did not load: {matching.COMPILED_IMPORT_ERROR!r}"
    )
    assert matching.IMPLEMENTATION == "c"
    from matching import _book

    assert matching.OrderBook is _book.OrderBook
    assert matching.OrderBook is not matching.ReferenceOrderBook
    assert Path(_book.__file__).suffix != ".py"


@pytest.mark.skipif(not NO_EXTENSIONS, reason="only for a build without extensions")
def test_build_without_extensions_reports_the_fallback():
    assert matching.IMPLEMENTATION == "py"
    assert isinstance(matching.COMPILED_IMPORT_ERROR, ImportError)
    assert matching.OrderBook is matching.ReferenceOrderBook


def test_fallback_is_reported_when_the_extension_cannot_import():
    # A fresh interpreter where importing matching._book fails, whatever this checkout holds.
    program = (
        "import sys\n"
        "sys.modules['matching._book'] = None\n"
        "import matching\n"
        "assert matching.IMPLEMENTATION == 'py', matching.IMPLEMENTATION\n"
        "assert isinstance(matching.COMPILED_IMPORT_ERROR, ImportError)\n"
        "assert matching.OrderBook is matching.ReferenceOrderBook\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
