"""One registry of error codes: every code the ledger package raises is listed, exactly once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ledger import block as blocks
from ledger.errors import ERROR_CODES, LEDGER_CODES, REFUSAL_CODES, LedgerRefusedError

LEDGER_PACKAGE = Path(__file__).resolve().parents[2] / "ledger"
PREFIXES = ("ledger", "block", "checkpoint", "receipt", "recordlog", "audit")
CODE = re.compile(rf"(?:{'|'.join(PREFIXES)})\.[a-z_]+")
CODE_PREFIX = re.compile(rf"(?:{'|'.join(PREFIXES)})\.[a-z_]*")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _code_literals() -> tuple[dict[str, list[str]], list[str]]:
    """Every string literal in ledger/ (but the registry) that is a code, with where; and every
    f-string that builds one (which this walk could not check, so none may exist)."""
    literals: dict[str, list[str]] = {}
    built: list[str] = []
    for path in sorted(LEDGER_PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstring_nodes(tree)
        where = str(path.relative_to(LEDGER_PACKAGE.parent))
        roots: list[ast.AST] = [tree]
        if path == LEDGER_PACKAGE / "errors.py":  # the registry itself: only its error classes
            roots = [node for node in tree.body if isinstance(node, ast.ClassDef)]
        for node in (node for root in roots for node in ast.walk(root)):
            if isinstance(node, ast.JoinedStr):
                first = node.values[0] if node.values else None
                if (
                    isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and CODE_PREFIX.fullmatch(first.value)
                ):
                    built.append(f"{where}:{node.lineno}")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and CODE.fullmatch(node.value)
            ):
                literals.setdefault(node.value, []).append(f"{where}:{node.lineno}")
    return literals, built


def test_every_code_string_in_the_ledger_package_is_registered() -> None:
    literals, built = _code_literals()
    assert len(literals) > 50  # the walk found the package's codes
    unregistered = {code: where for code, where in literals.items() if code not in ERROR_CODES}
    assert unregistered == {}
    assert built == [], "build codes from the registry (REFUSAL_CODES), not with f-strings"


def test_every_registered_code_is_used_or_marked() -> None:
    """No dead entries: a code nobody raises is either deprecated or said to be for callers."""
    literals, _ = _code_literals()
    unused = {
        code for code in ERROR_CODES if code not in literals and code not in REFUSAL_CODES.values()
    }
    assert unused == {"ledger.unknown_trade", "ledger.bad_checkpoint"}
    assert "Deprecated" in ERROR_CODES["ledger.unknown_trade"]


def test_meanings_are_one_line_sentences() -> None:
    for code, meaning in ERROR_CODES.items():
        assert CODE.fullmatch(code), code
        assert meaning and "\n" not in meaning and meaning.endswith("."), code


def test_refusals_map_block_rules_to_registered_ledger_codes() -> None:
    for block_code, ledger_code in REFUSAL_CODES.items():
        assert block_code in ERROR_CODES and ledger_code in LEDGER_CODES
        assert block_code.split(".")[1] == ledger_code.split(".")[1]
    refused = LedgerRefusedError.from_block_error(
        blocks.BlockError("block.negative_balance", "P-1 would hold -1 CNY")
    )
    assert refused.code == "ledger.negative_balance"
    assert refused.block_code == "block.negative_balance"
    assert LedgerRefusedError.from_block_error(blocks.BlockError("block.truncated", "x")).code == (
        "ledger.refused"
    )


def test_ledger_codes_are_the_ledger_prefix_of_the_registry() -> None:
    prefixed = {code: text for code, text in ERROR_CODES.items() if code.startswith("ledger.")}
    assert prefixed == LEDGER_CODES
    assert ERROR_CODES["ledger.no_such_trade"]


def test_the_venue_registry_takes_every_ledger_code_once_from_the_ledger() -> None:
    venue_errors = pytest.importorskip("venue.errors")
    venue_ledger_codes = {
        code: meaning
        for code, meaning in venue_errors.ERROR_CODES.items()
        if code.startswith("ledger.")
    }
    assert venue_ledger_codes == LEDGER_CODES
    members = [member for member in venue_errors.ErrorCode if member.subsystem == "ledger"]
    assert len(members) == len({member.value for member in members}) == len(LEDGER_CODES)
    assert venue_errors.ErrorCode("ledger.no_such_trade") is venue_errors.ErrorCode.NO_SUCH_TRADE
    assert venue_errors.ErrorCode.UNKNOWN_TRADE.value == "ledger.unknown_trade"  # never removed
