"""The ledger state file is appended to, not rewritten (issue 11): each save appends a MAC-chained
delta; opening from base + deltas equals a full scan; a torn or tampered delta costs only
itself; the file is rewritten whole when it must be."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import ledger.ledger
from ledger import state_file
from ledger.keys import generate_private_key
from tests.ledger.test_ledger import fill_payload, ledger_view, open_ledger, seed_market

TRADES = [f"T-{trade:06d}" for trade in range(60)]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_private_key()


def _sessions(directory: Path, key: Ed25519PrivateKey, rounds: int) -> list[int]:
    """Seed, then ``rounds`` sessions of 8 fills each; the file's length after each close."""
    lengths = []
    with open_ledger(directory, key) as opened:
        seed_market(opened)
    lengths.append((directory / state_file.STATE_FILE_NAME).stat().st_size)
    for session in range(rounds):
        with open_ledger(directory, key) as opened:
            for trade in range(session * 8, session * 8 + 8):
                opened.append("fill", fill_payload(trade))
        lengths.append((directory / state_file.STATE_FILE_NAME).stat().st_size)
    return lengths


def test_each_save_appends_a_delta_and_opening_from_them_equals_a_full_scan(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    directory = tmp_path / "ledger"
    path = directory / state_file.STATE_FILE_NAME
    _sessions(directory, key, 1)
    base = path.read_bytes()
    for session in range(1, 4):
        with open_ledger(directory, key) as opened:
            for trade in range(session * 8, session * 8 + 8):
                opened.append("fill", fill_payload(trade))
        data = path.read_bytes()
        assert data.startswith(base)  # appended: nothing before it was rewritten
        assert len(data) > len(base)
        base = data
    state, tail = state_file.decode_state_file(data, state_file.state_mac_key(key))
    assert tail.records == 5 and tail.offset == len(data)  # base + 4 deltas
    with open_ledger(directory, key) as from_state:
        assert from_state.opened_from_state == state.size == from_state.durable_count
        view = ledger_view(from_state, TRADES)
    path.unlink()
    with open_ledger(directory, key) as scanned:
        assert scanned.opened_from_state == 0
        assert ledger_view(scanned, TRADES) == view


def test_a_torn_or_tampered_delta_costs_only_itself_and_the_next_save_continues(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    directory = tmp_path / "ledger"
    path = directory / state_file.STATE_FILE_NAME
    mac_key = state_file.state_mac_key(key)
    _sessions(directory, key, 3)
    whole = path.read_bytes()
    full_state, full_tail = state_file.decode_state_file(whole, mac_key)
    # The state one record earlier: the file without its last delta.
    previous = state_file.decode_state_file(whole, mac_key, limit=full_state.size - 1)
    earlier_state, earlier_tail = previous
    assert earlier_tail.records == full_tail.records - 1

    for number, damaged in enumerate(
        (
            whole[: earlier_tail.offset + 20],  # a torn append
            whole[:-5] + bytes([whole[-5] ^ 1]) + whole[-4:],  # a changed byte in the last delta
        )
    ):
        path.write_bytes(damaged)
        with open_ledger(directory, key) as opened:
            assert opened.opened_from_state == earlier_state.size  # the records before it
            opened.append("fill", fill_payload(40 + number))
            blocks = opened.height + 1
        state, tail = state_file.decode_state_file(path.read_bytes(), mac_key)
        assert tail.records == full_tail.records  # the bad delta replaced by the new save
        assert state.size == blocks
        assert path.read_bytes()[: earlier_tail.offset] == whole[: earlier_tail.offset]
        path.write_bytes(whole)
        with open_ledger(directory, key) as reopened:  # the file as it was is still good
            assert reopened.opened_from_state == full_state.size
        path.write_bytes(whole)
    # A delta moved after another (the chain breaks) is not used either.
    offsets = [earlier_tail.offset, full_tail.offset]
    second_last = state_file.decode_state_file(whole, mac_key, limit=earlier_state.size - 1)[1]
    swapped = (
        whole[: second_last.offset]
        + whole[offsets[0] : offsets[1]]
        + whole[second_last.offset : offsets[0]]
    )
    assert state_file.decode_state_file(swapped, mac_key)[1].records == second_last.records


def test_the_file_is_rewritten_whole_once_it_holds_enough_records(
    tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger.ledger, "STATE_MAX_RECORDS", 3)
    directory = tmp_path / "ledger"
    path = directory / state_file.STATE_FILE_NAME
    mac_key = state_file.state_mac_key(key)
    _sessions(directory, key, 2)
    assert state_file.decode_state_file(path.read_bytes(), mac_key)[1].records == 3
    with open_ledger(directory, key) as opened:
        opened.append("fill", fill_payload(50))
    state, tail = state_file.decode_state_file(path.read_bytes(), mac_key)
    assert tail.records == 1 and tail.offset == path.stat().st_size  # compacted
    with open_ledger(directory, key) as reopened:
        assert reopened.opened_from_state == state.size == reopened.durable_count
