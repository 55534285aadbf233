"""The Ledger facade: refusals, balances, proofs, checkpoints, reopening, key rotation."""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import block as blocks
from ledger import state_file
from ledger.block import verify_block_signature
from ledger.checkpoint import parse_checkpoint, verify_checkpoint
from ledger.hasher import leaf_hash
from ledger.keys import generate_private_key, key_id
from ledger.ledger import (
    BLOCKS_DIRECTORY,
    Ledger,
    LedgerCorruptError,
    LedgerError,
    LedgerFailedError,
    LedgerRefusedError,
)
from ledger.proof import verify_consistency, verify_inclusion
from ledger.receipt import load_receipt, receipt_to_json, verify_receipt
from ledger.recordlog import RECORD_HEADER, LogScanner

SYMBOL = "IPABS-2019-1-A"
BUYER, SELLER = "P-MM1", "P-BR1"


def fill_payload(
    trade: int,
    buyer: str = BUYER,
    seller: str = SELLER,
    qty: int = 10,
    amount: int = 9_990,
    buyer_fee: int = 5,
    seller_fee: int = -1,
) -> dict[str, Any]:
    """A complete fill payload (SPEC section 3) with integer money and quantities."""
    return {
        "trade_id": f"T-{trade:06d}",
        "instrument": SYMBOL,
        "price": 998_750,
        "qty": qty,
        "accrued": 1_234,
        "factor": 950_000,
        "settlement_amount": amount,
        "buyer_fee": buyer_fee,
        "seller_fee": seller_fee,
        "maker_order_id": 1_000 + trade,
        "taker_order_id": 2_000 + trade,
        "buyer": buyer,
        "seller": seller,
        "buyer_segment": "interbank",
        "seller_segment": "exchange",
        "aggressor": "buy",
        "timestamp_ns": 1_700_000_000_000_000_000 + trade,
    }


def deposit(account: str, asset: str, amount: int) -> dict[str, Any]:
    source = "external:bank" if asset == "CNY" else "external:issuer"
    return {"account": account, "asset": asset, "amount": amount, "source": source}


def withdrawal(account: str, asset: str, amount: int) -> dict[str, Any]:
    return {"account": account, "asset": asset, "amount": amount, "destination": "external:bank"}


def open_ledger(directory: Path, key: Ed25519PrivateKey, **options: Any) -> Ledger:
    options.setdefault("signer", "thread")
    options.setdefault("checkpoint_every_blocks", 10)
    options.setdefault("checkpoint_every_ms", 50)
    return Ledger.open(directory, key, **options)


def seed_market(ledger: Ledger) -> None:
    """List the instrument, admit both sides and fund them."""
    listing = {
        "symbol": SYMBOL,
        "currency": "CNY",
        "face_per_unit": 10_000,
        "tick_size": "0.0001",
        "pool_factor": 950_000,
    }
    ledger.append("instrument_listed", listing)
    ledger.append("participant_admitted", {"participant_id": BUYER, "segment": "interbank",
                                           "role": "market_maker"})  # fmt: skip
    ledger.append("participant_admitted", {"participant_id": SELLER, "segment": "exchange",
                                           "role": "broker"})  # fmt: skip
    ledger.append("deposit", deposit(BUYER, "CNY", 1_000_000))
    ledger.append("deposit", deposit(SELLER, SYMBOL, 1_000)).result(5)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture
def ledger(tmp_path: Path, key: Ed25519PrivateKey):  # type: ignore[no-untyped-def]
    opened = open_ledger(tmp_path / "ledger", key)
    seed_market(opened)
    yield opened
    opened.close()


def test_a_new_ledger_starts_with_a_genesis_block_naming_the_key(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    with open_ledger(tmp_path, key, origin="test.example/ledger") as ledger:
        assert ledger.height == 0 and ledger.durable_count == 1
        genesis = ledger.block(0)
        assert genesis.block.kind == "genesis"
        assert genesis.block.payload["origin"] == "test.example/ledger"
        assert genesis.block.key_id == key_id(key) == ledger.signing_key_id
        verify_block_signature(genesis, key.public_key())


@pytest.mark.parametrize("signer", ["thread", "process"])
def test_appended_blocks_are_durable_signed_and_linked(
    tmp_path: Path, key: Ed25519PrivateKey, signer: str
) -> None:
    with open_ledger(tmp_path, key, signer=signer) as ledger:
        seed_market(ledger)
        before = time.perf_counter()
        handles = [ledger.append("fill", fill_payload(n)) for n in range(40)]
        assert [handle.height for handle in handles] == list(range(6, 46))
        assert [handle.result(5) for handle in handles] == list(range(6, 46))
        assert ledger.durable_count == 46
        # Each handle is stamped when the ledger learns it is durable, in height order.
        stamps = [handle.durable_at for handle in handles]
        assert all(stamp is not None for stamp in stamps)
        assert before <= stamps[0] <= stamps[-1] <= time.perf_counter()
        assert stamps == sorted(stamps)
        previous = ledger.block(0)
        for height in range(1, 46):
            signed = ledger.block(height)
            verify_block_signature(signed, key.public_key())
            assert signed.block.height == height
            assert signed.block.prev_hash == previous.block_hash
            assert signed.block.timestamp_ns >= previous.block.timestamp_ns
            previous = signed
        assert ledger.find_fill("T-000007") == 13
        assert ledger.find_fill("T-999999") is None
        with pytest.raises(LedgerError) as caught:
            ledger.block(46)
        assert caught.value.code == "ledger.no_such_block"


def snapshot(ledger: Ledger) -> tuple[int, bytes, dict[tuple[str, str], int]]:
    ledger.flush()
    return ledger.height, ledger.root(ledger.height + 1), ledger.balances()


@pytest.mark.parametrize(
    ("kind", "payload", "deltas", "code"),
    [
        ("withdrawal", withdrawal(BUYER, "CNY", 1_000_001), None, "ledger.negative_balance"),
        ("fill", fill_payload(1, qty=1_001), None, "ledger.negative_balance"),
        ("fill", fill_payload(1, amount=999_999), None, "ledger.negative_balance"),
        (
            "instrument_listed",
            {"symbol": "IPABS-2020-2-B", "currency": "CNY", "face_per_unit": 10_000,
             "tick_size": "0.0001", "pool_factor": 1_000_000},
            [("external:issuer", "IPABS-2020-2-B", -500), (SELLER, "IPABS-2020-2-B", 499)],
            "ledger.not_conserved",
        ),
        (
            "fill",
            fill_payload(1),
            [(BUYER, "CNY", -9_995), (SELLER, "CNY", 9_995),
             (BUYER, SYMBOL, 10), (SELLER, SYMBOL, -10)],
            "ledger.not_dvp",
        ),
        ("fill", {**fill_payload(1), "price": 99.875}, None, "ledger.bad_field"),
        ("fill", {k: v for k, v in fill_payload(1).items() if k != "buyer"}, None,
         "ledger.bad_field"),
        ("fill", fill_payload(1, qty=0), None, "ledger.bad_field"),
        ("deposit", {**deposit(BUYER, "CNY", 5), "source": "P-BR1"}, None, "ledger.bad_field"),
        ("deposit", deposit(BUYER, "CNY", 5), [(BUYER, "CNY")], "ledger.bad_field"),
        ("deposit", deposit(BUYER, "CNY", 5), [(BUYER, "CNY", 5.0)], "ledger.bad_field"),
        ("genesis", {}, None, "ledger.bad_kind"),
        ("no_such_kind", {}, None, "ledger.bad_kind"),
    ],
)  # fmt: skip
def test_a_refused_block_raises_a_stable_code_and_changes_nothing(
    ledger: Ledger, kind: str, payload: dict[str, Any], deltas: Any, code: str
) -> None:
    before = snapshot(ledger)
    with pytest.raises(LedgerRefusedError) as caught:
        ledger.append(kind, payload, deltas)
    assert caught.value.code == code
    assert snapshot(ledger) == before
    # Nothing was consumed: the next good block takes the next height.
    assert ledger.append("fill", fill_payload(1)).result(5) == before[0] + 1


def test_a_duplicate_trade_id_is_refused(ledger: Ledger) -> None:
    ledger.append("fill", fill_payload(3)).result(5)
    before = snapshot(ledger)
    with pytest.raises(LedgerRefusedError) as caught:
        ledger.append("fill", fill_payload(3))
    assert caught.value.code == "ledger.duplicate_trade"
    assert snapshot(ledger) == before


def recompute_balances(operations: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], int]:
    """Balances straight from accepted payloads, without any ledger code."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for kind, payload in operations:
        if kind == "deposit":
            totals[payload["account"], payload["asset"]] += payload["amount"]
            totals[payload["source"], payload["asset"]] -= payload["amount"]
        elif kind == "withdrawal":
            totals[payload["account"], payload["asset"]] -= payload["amount"]
            totals[payload["destination"], payload["asset"]] += payload["amount"]
        elif kind == "fill":
            amount, qty = payload["settlement_amount"], payload["qty"]
            totals[payload["buyer"], "CNY"] -= amount + payload["buyer_fee"]
            totals[payload["seller"], "CNY"] += amount - payload["seller_fee"]
            totals["venue:fees", "CNY"] += payload["buyer_fee"] + payload["seller_fee"]
            totals[payload["buyer"], payload["instrument"]] += qty
            totals[payload["seller"], payload["instrument"]] -= qty
    return {key: value for key, value in totals.items() if value}


def test_balances_after_a_random_stream_equal_a_recomputation(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    rng = random.Random(20240611)
    people = ["P-A", "P-B", "P-C", "P-D"]
    accepted: list[tuple[str, dict[str, Any]]] = []
    refused = 0
    with open_ledger(tmp_path, key) as ledger:
        for trade in range(400):
            choice = rng.random()
            person = rng.choice(people)
            if choice < 0.15:
                asset = rng.choice(["CNY", SYMBOL])
                kind, payload = "deposit", deposit(person, asset, rng.randrange(1, 50_000))
            elif choice < 0.25:
                asset = rng.choice(["CNY", SYMBOL])
                kind, payload = "withdrawal", withdrawal(person, asset, rng.randrange(1, 20_000))
            else:
                buyer, seller = rng.sample(people, 2)
                kind = "fill"
                payload = fill_payload(
                    trade,
                    buyer,
                    seller,
                    qty=rng.randrange(1, 300),
                    amount=rng.randrange(1, 30_000),
                    buyer_fee=rng.randrange(-3, 30),
                    seller_fee=rng.randrange(-3, 30),
                )
            try:
                ledger.append(kind, payload)
            except LedgerRefusedError as error:
                assert error.code == "ledger.negative_balance"
                refused += 1
            else:
                accepted.append((kind, payload))
        ledger.flush()
        expected = recompute_balances(accepted)
        assert {k: v for k, v in ledger.balances().items() if v} == expected
        assert all(v >= 0 for (account, _), v in expected.items() if ":" not in account)
        assert 0 < refused < 400 and len(accepted) > 100
        height = ledger.height
    with open_ledger(tmp_path, key) as reopened:
        assert reopened.height == height
        assert {k: v for k, v in reopened.balances().items() if v} == expected


def test_inclusion_and_consistency_proofs_verify(ledger: Ledger) -> None:
    for trade in range(60):
        ledger.append("fill", fill_payload(trade, qty=1, amount=100))
    ledger.flush()
    size = ledger.durable_count
    for tree_size in (1, 2, 7, 33, size):
        root = ledger.root(tree_size)
        for height in {0, tree_size // 2, tree_size - 1}:
            proof = ledger.inclusion_proof(height, tree_size)
            block_leaf = leaf_hash(ledger.block(height).block_hash)
            verify_inclusion(height, tree_size, block_leaf, proof, root)
    for old in (1, 5, 32, size - 1):
        proof = ledger.consistency_proof(old, size)
        verify_consistency(old, size, proof, ledger.root(old), ledger.root(size))
    with pytest.raises(LedgerError) as caught:
        ledger.inclusion_proof(0, size + 1)
    assert caught.value.code == "ledger.bad_tree_size"


def test_checkpoints_are_signed_stored_and_match_the_tree(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    for trade in range(25):
        ledger.append("fill", fill_payload(trade, qty=1, amount=100))
    note = ledger.issue_checkpoint()
    checkpoint = verify_checkpoint(note, key.public_key(), origin=ledger.origin)
    assert checkpoint.size == ledger.durable_count == ledger.height + 1
    assert checkpoint.root_hash == ledger.root(checkpoint.size)
    assert ledger.checkpoint() == note
    stored = [record.payload.decode() for record in LogScanner(ledger.directory / "checkpoints")]
    assert stored[-1] == note
    sizes = [parse_checkpoint(text)[0].size for text in stored]
    assert sizes == sorted(set(sizes))  # strictly growing
    for text in stored:
        parsed = verify_checkpoint(text, key.public_key())
        assert parsed.root_hash == ledger.root(parsed.size)


def test_checkpoints_only_cover_durable_blocks(
    tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_ledger(tmp_path, key, checkpoint_every_blocks=1, checkpoint_every_ms=1)
    seed_market(ledger)
    ledger.flush()
    durable_before = ledger.durable_count
    blocks_fd = ledger._blocks._segment_writer._fd
    stalled = threading.Event()
    release = threading.Event()
    real_fsync = os.fsync

    def stalling_fsync(fd: int) -> None:
        if fd == blocks_fd:
            stalled.set()
            assert release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", stalling_fsync)
    handles = [ledger.append("fill", fill_payload(n, qty=1, amount=100)) for n in range(5)]
    assert stalled.wait(5)
    time.sleep(0.05)  # give the checkpointer many chances (every 1 ms) to overreach
    latest = ledger.checkpoint()
    assert latest is not None
    assert parse_checkpoint(latest)[0].size <= durable_before
    assert ledger.durable_count == durable_before
    assert not any(handle.done() for handle in handles)
    release.set()
    for handle in handles:
        handle.result(5)
    deadline = time.monotonic() + 5
    while parse_checkpoint(ledger.checkpoint() or "")[0].size < ledger.durable_count:
        assert time.monotonic() < deadline, "no checkpoint ever covered the new blocks"
        time.sleep(0.005)
    ledger.close()


def test_reopen_restores_height_root_balances_index_and_checkpoint(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    with open_ledger(tmp_path, key) as ledger:
        seed_market(ledger)
        for trade in range(30):
            ledger.append("fill", fill_payload(trade, qty=2, amount=300))
        ledger.append("factor_update", {"instrument": SYMBOL, "factor": 900_000})
        ledger.flush()
        state = (ledger.height, ledger.root(ledger.height + 1), ledger.balances())
        fill_height = ledger.find_fill("T-000017")
    with open_ledger(tmp_path, key) as reopened:
        assert (reopened.height, reopened.root(reopened.height + 1), reopened.balances()) == state
        assert reopened.find_fill("T-000017") == fill_height
        latest = parse_checkpoint(reopened.checkpoint() or "")[0]
        assert latest.size == state[0] + 1  # close() checkpointed everything
        handle = reopened.append("fill", fill_payload(99, qty=1, amount=10))
        assert handle.result(5) == state[0] + 1
        assert reopened.block(handle.height).block.prev_hash == reopened.block(state[0]).block_hash


@pytest.mark.parametrize("signer", ["thread", "process"])
def test_key_rotation_switches_the_signing_key(
    tmp_path: Path, key: Ed25519PrivateKey, signer: str
) -> None:
    new_key = generate_private_key()
    with open_ledger(tmp_path, key, signer=signer) as ledger:
        seed_market(ledger)
        ledger.append("fill", fill_payload(1))
        rotation = ledger.rotate_key(new_key, reason="scheduled")
        assert rotation.done()
        after = [ledger.append("fill", fill_payload(n)) for n in range(2, 6)]
        for handle in after:
            handle.result(5)
        rotation_block = ledger.block(rotation.height)
        assert rotation_block.block.kind == "key_rotation"
        verify_block_signature(rotation_block, key.public_key())
        for handle in after:
            verify_block_signature(ledger.block(handle.height), new_key.public_key())
        note = ledger.issue_checkpoint()
        verify_checkpoint(note, new_key.public_key())
        with pytest.raises(LedgerRefusedError):
            ledger.rotate_key(new_key)
    with pytest.raises(LedgerError) as caught:
        open_ledger(tmp_path, key)
    assert caught.value.code == "ledger.wrong_signing_key"
    with open_ledger(tmp_path, new_key) as reopened:
        handle = reopened.append("fill", fill_payload(9))
        handle.result(5)
        verify_block_signature(reopened.block(handle.height), new_key.public_key())


def test_a_failed_fsync_is_fatal(
    tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_ledger(tmp_path, key)
    seed_market(ledger)
    ledger.flush()
    blocks_fd = ledger._blocks._segment_writer._fd
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if fd == blocks_fd:
            raise OSError(errno.EIO, "simulated disk error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    handle = ledger.append("fill", fill_payload(1))
    error = handle.exception(5)
    assert isinstance(error, LedgerFailedError) and error.code == "ledger.write_failed"
    with pytest.raises(LedgerFailedError):
        ledger.append("fill", fill_payload(2))
    ledger.close()


def test_damage_before_the_tail_is_refused_naming_the_height(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    with open_ledger(tmp_path, key) as ledger:
        seed_market(ledger)
        for trade in range(10):
            ledger.append("fill", fill_payload(trade))
    scanned = list(LogScanner(tmp_path / BLOCKS_DIRECTORY))
    target = scanned[8]
    segment = Path(target.path)
    data = bytearray(segment.read_bytes())
    data[target.offset + RECORD_HEADER.size + 20] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(LedgerCorruptError) as caught:
        open_ledger(tmp_path, key)
    assert (caught.value.height, caught.value.path, caught.value.offset) == (
        8,
        target.path,
        target.offset,
    )


def test_losing_blocks_a_checkpoint_covered_is_refused(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    with open_ledger(tmp_path, key) as ledger:
        seed_market(ledger)
        ledger.issue_checkpoint()
    last = list(LogScanner(tmp_path / BLOCKS_DIRECTORY))[-1]
    segment = Path(last.path)
    # Cut the last block in half: to the record log it looks like a torn tail...
    segment.write_bytes(segment.read_bytes()[: last.offset + 20])
    damaged = segment.read_bytes()
    with pytest.raises(LedgerCorruptError) as caught:
        open_ledger(tmp_path, key)
    # ...but a checkpoint had covered it, so it was durable: refuse rather than lose it,
    # and leave the evidence as it is.
    assert (caught.value.height, caught.value.path, caught.value.offset) == (
        last.record_number,
        last.path,
        last.offset,
    )
    assert "lost data" in str(caught.value)
    assert segment.read_bytes() == damaged


def test_a_receipt_verifies_offline_with_only_the_public_key(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    handle = ledger.append("fill", fill_payload(42))
    receipt = ledger.receipt("T-000042")  # no checkpoint covers it yet: one is issued
    assert handle.done()
    document = load_receipt(receipt_to_json(receipt))
    verified = verify_receipt(document, key.public_key(), origin=ledger.origin)
    assert verified.height == handle.height
    stranger = generate_private_key()
    with pytest.raises(ValueError):
        verify_receipt(document, stranger.public_key())
    with pytest.raises(LedgerError) as caught:
        ledger.receipt("T-404")
    assert caught.value.code == "ledger.no_such_trade"


def test_the_fast_open_scan_agrees_with_the_strict_decoder(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    """Opening reads blocks with a fast scanner; block.py's strict decoder is the oracle."""
    from ledger.block import apply_deltas, decode_signed_block
    from ledger.recovery import scan_block

    rng = random.Random(5)
    with open_ledger(tmp_path, key) as ledger:
        seed_market(ledger)
        for trade in range(80):
            ledger.append("fill", fill_payload(trade, qty=rng.randrange(1, 5),
                                               amount=rng.randrange(1, 999)))  # fmt: skip
            if trade == 40:
                ledger.rotate_key(generate_private_key())
                key = ledger._signing_key
        ledger.append("withdrawal", withdrawal(SELLER, "CNY", 10))
        ledger.append("factor_update", {"instrument": SYMBOL, "factor": 800_000})
    oracle_balances: dict[tuple[str, str], int] = {}
    oracle_trades = {}
    for record in LogScanner(tmp_path / BLOCKS_DIRECTORY):
        strict = decode_signed_block(record.payload)
        apply_deltas(oracle_balances, strict.block.deltas)
        if strict.block.kind == "fill":
            oracle_trades[strict.block.payload["trade_id"]] = strict.height
        fast = scan_block(record.payload)
        assert fast is not None
        assert (fast.height, fast.prev_hash, fast.block_hash, fast.timestamp_ns) == (
            strict.height,
            strict.block.prev_hash,
            strict.block_hash,
            strict.block.timestamp_ns,
        )
        assert fast.raw_key_id.hex() == strict.block.key_id
        assert fast.deltas == [(d.account, d.asset, d.amount) for d in strict.block.deltas]
        assert fast.trade_id == strict.block.payload.get("trade_id")
    with open_ledger(tmp_path, key) as reopened:
        assert reopened.balances() == oracle_balances
        assert all(reopened.find_fill(trade) == height for trade, height in oracle_trades.items())


def test_a_fill_that_does_not_conserve_cash_is_refused(ledger: Ledger) -> None:
    """Buyer pays 9,995, seller gets 9,991, fees get 5: one fen appears from nowhere."""
    before = snapshot(ledger)
    deltas = [(BUYER, "CNY", -9_995), (SELLER, "CNY", 9_991), ("venue:fees", "CNY", 5),
              (BUYER, SYMBOL, 10), (SELLER, SYMBOL, -10)]  # fmt: skip
    with pytest.raises(LedgerRefusedError) as caught:
        ledger.append("fill", fill_payload(1), deltas)
    # Which of the two broken rules block.py reports first is its choice.
    assert caught.value.code in ("ledger.not_conserved", "ledger.not_dvp")
    assert snapshot(ledger) == before


def test_a_dead_writer_process_is_fatal_even_while_idle(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    ledger = open_ledger(tmp_path, key, signer="process")
    seed_market(ledger)
    ledger.flush()
    durable = ledger.durable_count
    assert ledger.writer_process_id is not None
    os.kill(ledger.writer_process_id, signal.SIGKILL)  # the child holding the key dies
    for _ in range(5_000):  # until the durable thread has seen its output end (bounded)
        try:
            ledger.append("fill", fill_payload(1)).exception(5)
        except LedgerFailedError as error:
            assert "ended (exit status -9)" in str(error.__cause__)
            break
        time.sleep(0.001)
    else:
        raise AssertionError("the ledger did not notice its writer process died")
    with pytest.raises(LedgerFailedError):
        ledger.append("fill", fill_payload(9))
    assert ledger.durable_count == durable
    ledger.close()
    with open_ledger(tmp_path, key, signer="process") as reopened:  # nothing acknowledged lost
        assert reopened.durable_count >= durable
        reopened.append("fill", fill_payload(2)).result(5)


def test_blocks_in_flight_when_the_writer_process_dies_fail(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    ledger = open_ledger(tmp_path, key, signer="process")
    seed_market(ledger)
    ledger.flush()
    os.kill(ledger.writer_process_id, signal.SIGSTOP)  # the next blocks wait in the pipe
    handles = [ledger.append("fill", fill_payload(n)) for n in range(20)]
    os.kill(ledger.writer_process_id, signal.SIGKILL)
    for handle in handles:
        assert isinstance(handle.exception(5), LedgerFailedError)
        assert handle.durable_at is None
    ledger.close()


def test_the_origin_is_fixed_at_genesis(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    with open_ledger(tmp_path, key, origin="first.example/log") as ledger:
        ledger.issue_checkpoint()
    with open_ledger(tmp_path, key) as reopened:
        assert reopened.origin == "first.example/log"
    with pytest.raises(LedgerError) as caught:
        open_ledger(tmp_path, key, origin="other.example/log")
    assert caught.value.code == "ledger.origin_mismatch"


def wait_for_checkpoint_covering(ledger: Ledger, size: int) -> int:
    """Poll (bounded) until a checkpoint covers ``size`` blocks; return the polls it took."""
    for polls in range(2_000):
        note = ledger.checkpoint()
        if note is not None and parse_checkpoint(note)[0].size >= size:
            return polls
        time.sleep(0.005)
    raise AssertionError(f"no checkpoint covered {size} blocks")


@pytest.mark.parametrize(("every_blocks", "every_ms"), [(1_000_000, 20), (4, 3_600_000)])
def test_checkpoints_are_issued_by_block_count_or_by_time(
    tmp_path: Path, key: Ed25519PrivateKey, every_blocks: int, every_ms: int
) -> None:
    with open_ledger(
        tmp_path, key, checkpoint_every_blocks=every_blocks, checkpoint_every_ms=every_ms
    ) as ledger:
        seed_market(ledger)  # 6 blocks in all: past 4 blocks, and soon past 20 ms
        ledger.flush()
        wait_for_checkpoint_covering(ledger, 4)
        note = ledger.checkpoint()
        assert note is not None
        assert verify_checkpoint(note, key.public_key()).size <= ledger.durable_count


# ---- the state file: opening without scanning every block ---------------------------------


def ledger_view(ledger: Ledger, trade_ids: list[str]) -> tuple[Any, ...]:
    """Everything opening rebuilds, as seen through the public API."""
    size = ledger.height + 1
    return (
        size,
        ledger.root(size),
        ledger.balances(),
        {trade_id: ledger.find_fill(trade_id) for trade_id in trade_ids},
        ledger.signing_key_id,
        ledger.block(size - 1).block_hash,
    )


def test_opening_from_the_state_file_and_a_tail_equals_a_full_scan(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    state_path = tmp_path / state_file.STATE_FILE_NAME
    with open_ledger(tmp_path, key) as ledger:
        seed_market(ledger)
        for trade in range(20):
            ledger.append("fill", fill_payload(trade, qty=2, amount=300))
    older_state = state_path.read_bytes()  # saved by close(), covering 26 blocks
    with open_ledger(tmp_path, key) as ledger:
        assert ledger.opened_from_state == 26
        for trade in range(20, 35):
            ledger.append("fill", fill_payload(trade, qty=1, amount=100, seller=BUYER,
                                               buyer=SELLER))  # fmt: skip
        ledger.append("withdrawal", withdrawal(BUYER, "CNY", 7))
    trade_ids = [f"T-{trade:06d}" for trade in range(40)]
    # The older state: the 16 newer blocks are a tail that opening must scan.
    state_path.write_bytes(older_state)
    with open_ledger(tmp_path, key) as from_state:
        assert from_state.opened_from_state == 26
        view = ledger_view(from_state, trade_ids)
    state_path.unlink()
    with open_ledger(tmp_path, key) as scanned:
        assert scanned.opened_from_state == 0
        assert ledger_view(scanned, trade_ids) == view
        assert view[0] == 42 and view[3]["T-000034"] == 40 and view[3]["T-000035"] is None
        # Appending goes on from the rebuilt state.
        assert scanned.append("fill", fill_payload(50)).result(5) == 42


def reencoded_state(
    data: bytes,
    key: Ed25519PrivateKey,
    mac_key: Ed25519PrivateKey | None = None,
    **changes: Any,
) -> bytes:
    """The state file ``data`` (saved under ``key``) with ``changes`` applied, under a valid
    MAC for ``mac_key`` (default ``key``)."""
    state = state_file.decode_state(data, state_file.state_mac_key(key))
    fields = {name: getattr(state, name) for name in state.__slots__}
    fields.update(changes)
    new_mac_key = state_file.state_mac_key(mac_key or key)
    return state_file.encode_state(state_file.LedgerState(**fields), new_mac_key)


def wrong_leaf(data: bytes, key: Ed25519PrivateKey) -> bytes:
    leaves = state_file.decode_state(data, state_file.state_mac_key(key)).leaf_hashes
    return reencoded_state(data, key, leaf_hashes=leaves[:96] + bytes(32) + leaves[128:])


def one_more_block(data: bytes, key: Ed25519PrivateKey) -> bytes:
    state = state_file.decode_state(data, state_file.state_mac_key(key))
    longer = state.leaf_hashes + bytes(32)
    return reencoded_state(data, key, size=state.size + 1, leaf_hashes=longer)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(lambda data, key: data[:40] + bytes([data[40] ^ 1]) + data[41:], "MAC",
                     id="bit"),
        pytest.param(lambda data, key: data[:-1], "MAC", id="truncated"),
        pytest.param(lambda data, key: reencoded_state(data, key, generate_private_key()), "MAC",
                     id="other_key"),
        pytest.param(lambda data, key: reencoded_state(data, key, last_hash=bytes(32)),
                     "does not hash to the saved last hash", id="last_hash_not_on_disk"),
        pytest.param(wrong_leaf, "does not match the blocks", id="leaf_not_in_checkpoint"),
        pytest.param(one_more_block, "state covers 17 blocks; checkpointed 16",
                     id="more_than_checkpointed"),
    ],
)  # fmt: skip
def test_a_state_file_that_does_not_check_out_is_not_used(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    damage: Any,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state_path = tmp_path / state_file.STATE_FILE_NAME
    trade_ids = [f"T-{trade:06d}" for trade in range(12)]
    with open_ledger(tmp_path, key) as ledger:
        seed_market(ledger)
        for trade in range(10):
            ledger.append("fill", fill_payload(trade))
    with open_ledger(tmp_path, key) as ledger:
        assert ledger.opened_from_state == 16
        view = ledger_view(ledger, trade_ids)
    state_path.write_bytes(damage(state_path.read_bytes(), key))
    with open_ledger(tmp_path, key) as reopened:
        assert reopened.opened_from_state == 0  # rebuilt from every block instead
        assert ledger_view(reopened, trade_ids) == view
    assert reason in caplog.text


def test_the_checkpointer_saves_the_state_so_a_crash_scans_only_the_rest(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    ledger = open_ledger(tmp_path / "live", key, checkpoint_every_blocks=4, state_every_blocks=8)
    try:
        seed_market(ledger)
        for trade in range(30):
            ledger.append("fill", fill_payload(trade))
        ledger.flush()
        deadline = time.monotonic() + 10
        while ledger._state_size < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        saved = ledger._state_size
        assert 8 <= saved <= ledger.durable_count
        # A copy of the directory while the ledger is still open is what a crash leaves.
        shutil.copytree(tmp_path / "live", tmp_path / "crashed")
        view = ledger_view(ledger, [f"T-{trade:06d}" for trade in range(30)])
    finally:
        ledger.close()
    with open_ledger(tmp_path / "crashed", key) as recovered:
        assert recovered.opened_from_state >= saved
        assert ledger_view(recovered, [f"T-{trade:06d}" for trade in range(30)]) == view


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(-(10**12), 10**12),
    buyer_fee=st.integers(-1000, 1000),
    seller_fee=st.integers(-1000, 1000),
    qty=st.integers(-5, 5),
    names=st.lists(st.sampled_from(["P-A", "P-B", "P-Z", "venue:fees", "a", "Z9", "CNY"]),
                   min_size=3, max_size=3),
)  # fmt: skip
def test_the_fast_fill_deltas_are_the_dvp_rule_as_documented(
    amount: int, buyer_fee: int, seller_fee: int, qty: int, names: list[str]
) -> None:
    """The one fill_deltas the ledger appends with (written for speed) is docs/LEDGER.md's DvP
    rule, written plainly here: the five entries, zeros left out, sorted; ties included."""
    buyer, seller, instrument = names
    payload = {**fill_payload(1, buyer=buyer, seller=seller, qty=qty, amount=amount,
                              buyer_fee=buyer_fee, seller_fee=seller_fee),
               "instrument": instrument}  # fmt: skip
    entries = [
        blocks.Delta(buyer, "CNY", -(amount + buyer_fee)),
        blocks.Delta(seller, "CNY", amount - seller_fee),
        blocks.Delta("venue:fees", "CNY", buyer_fee + seller_fee),
        blocks.Delta(buyer, instrument, qty),
        blocks.Delta(seller, instrument, -qty),
    ]
    fast = blocks.fill_deltas(payload)
    assert fast == tuple(sorted(entry for entry in entries if entry.amount))
    assert all(type(delta) is blocks.Delta for delta in fast)


@settings(max_examples=200, deadline=None)
@given(
    order=st.permutations(range(5)),
    zero_extras=st.integers(0, 2),
    split_first=st.booleans(),
    float_amount=st.booleans(),
    as_deltas=st.booleans(),
)
def test_given_fill_deltas_canonicalise_as_the_general_path(
    order: list[int], zero_extras: int, split_first: bool, float_amount: bool, as_deltas: bool
) -> None:
    """The venue's own fill deltas, in any order, with zeros, split entries or a float amount,
    canonicalise exactly as ``make_deltas`` does (the fast path only ever short-cuts it)."""
    payload = fill_payload(1, buyer_fee=0)  # a zero fee entry, as the venue writes it
    dvp = [(BUYER, "CNY", -9_990), (SELLER, "CNY", 9_991), ("venue:fees", "CNY", -1),
           (BUYER, SYMBOL, 10), (SELLER, SYMBOL, -10)]  # fmt: skip
    triples: list[Any] = [dvp[index] for index in order]
    triples += [(BUYER, "CNY", 0)] * zero_extras
    if split_first:
        account, asset, amount = triples.pop(0)
        triples += [(account, asset, amount - 3), (account, asset, 3)]
    if as_deltas:
        triples = [blocks.Delta(*triple) for triple in triples]
    if float_amount:
        account, asset, amount = triples[-1]
        triples[-1] = blocks.Delta(account, asset, float(amount))
    canonical = Ledger._canonical_deltas("fill", payload, triples)
    reference = blocks.make_deltas(
        (delta.account, delta.asset, delta.amount) if isinstance(delta, blocks.Delta) else delta
        for delta in triples
    )
    assert canonical == reference
    assert [type(delta.amount) for delta in canonical] == [type(d.amount) for d in reference]
