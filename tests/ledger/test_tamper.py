"""Tamper evidence: damage to a 200+ block mixed ledger makes ``verify`` fail at the right height.

The ledger is built once through the real ``Ledger`` API (genesis, listings, admissions, deposits,
fills across both segments, withdrawals, factor updates, a key rotation, checkpoints). Each case
damages the files in place, runs ``verify_ledger`` in-process, and restores the original bytes.
Byte flips are sampled from every region of one record of every kind: frame length, frame
checksum, block header, payload, deltas, signature — both as a plain flip (the frame checksum
catches it) and with the checksum recomputed (an attacker who knows the format: the signature and
the chain rules must catch it).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.audit import verify_ledger
from ledger.block import (
    HEADER,
    KINDS,
    Block,
    Signer,
    decode_signed_block,
    deposit_deltas,
    distribution_deltas,
    pool_report_deltas,
)
from ledger.checkpoint import make_checkpoint, parse_checkpoint, sign_checkpoint
from ledger.keys import generate_private_key
from ledger.ledger import Ledger
from ledger.proof import MerkleTree
from ledger.recordlog import RECORD_HEADER, LogScanner, frame_record

INSTRUMENTS = ("IPABS-2019-1-A", "IPABS-2019-1-B")
PARTICIPANTS = {
    "P-IB1": "interbank",
    "P-IB2": "interbank",
    "P-IB3": "interbank",
    "P-EX1": "exchange",
    "P-EX2": "exchange",
    "P-EX3": "exchange",
}


@dataclass
class BuiltLedger:
    data_dir: Path
    first_key: Ed25519PrivateKey
    second_key: Ed25519PrivateKey
    block_count: int
    trade_ids: list[str]


def fill_payload(trade_id: str, instrument: str, buyer: str, seller: str, qty: int) -> dict:
    price = 995_000 + qty % 7 * 125  # ticks of 0.0001 per 100 face
    amount = qty * 100 * price // 10_000  # fen, at factor 1.0 and no accrued: a plain example
    return {
        "trade_id": trade_id,
        "instrument": instrument,
        "price": price,
        "qty": qty,
        "accrued": 0,
        "factor": 1_000_000,
        "settlement_amount": amount,
        "buyer_fee": amount // 10_000,
        "seller_fee": -(amount // 20_000),
        "maker_order_id": f"O-{trade_id}-M",
        "taker_order_id": f"O-{trade_id}-T",
        "buyer": buyer,
        "seller": seller,
        "buyer_segment": PARTICIPANTS[buyer],
        "seller_segment": PARTICIPANTS[seller],
        "aggressor": "buy" if qty % 2 else "sell",
        "timestamp_ns": 1_764_158_400_000_000_000 + qty,
    }


def build_mixed_ledger(data_dir: Path, fills: int = 190, seed: int = 7) -> BuiltLedger:
    """A ledger of every block kind, built through the store's ``Ledger`` API."""
    rng = random.Random(seed)
    first_key, second_key = generate_private_key(), generate_private_key()
    ledger = Ledger.open(
        data_dir / "ledger", first_key, signer="thread", checkpoint_every_blocks=40
    )
    for symbol in INSTRUMENTS:
        ledger.append(
            "instrument_listed",
            {
                "symbol": symbol,
                "currency": "CNY",
                "face_per_unit": 10_000,
                "tick_size": "0.0001",
                "pool_factor": 1_000_000,
                "reference": {"deal": "IP-ABS 2019-1", "tranche_class": "senior"},
            },
        )
    for participant, segment in PARTICIPANTS.items():
        ledger.append(
            "participant_admitted",
            {"participant_id": participant, "segment": segment, "role": "broker"},
        )
        ledger.append(
            "deposit",
            {"account": participant, "asset": "CNY", "amount": 10**11, "source": "external:bank"},
        )
        for symbol in INSTRUMENTS:
            ledger.append(
                "deposit",
                {
                    "account": participant,
                    "asset": symbol,
                    "amount": 100_000,
                    "source": "external:issuer",
                },
            )
    trade_ids = []
    names = list(PARTICIPANTS)
    for number in range(fills):
        buyer, seller = rng.sample(names, 2)
        trade_id = f"T-{number:05d}"
        instrument = rng.choice(INSTRUMENTS)
        ledger.append("fill", fill_payload(trade_id, instrument, buyer, seller, rng.randint(1, 90)))
        trade_ids.append(trade_id)
        if number % 40 == 39:
            ledger.issue_checkpoint()
        if number == 60:
            ledger.append("factor_update", {"instrument": INSTRUMENTS[0], "factor": 980_000})
            ledger.append(
                "instrument_updated",
                {
                    "symbol": INSTRUMENTS[1],
                    "change": "status",
                    "reference": {"status": "halted"},
                },
            )
        if number == 100:
            ledger.flush()
            ledger.rotate_key(second_key, reason="scheduled rotation")
        if number == 130:
            ledger.append(
                "withdrawal",
                {
                    "account": buyer,
                    "asset": "CNY",
                    "amount": 12_345,
                    "destination": "external:bank",
                },
            )
        if number == 150:  # a deal's life: listing, a servicer's report, a payment date
            append_deal_blocks(ledger, servicer=buyer, holder=seller)
    ledger.flush()
    ledger.issue_checkpoint()
    ledger.close()
    blocks = sum(1 for _ in LogScanner(data_dir / "ledger" / "blocks"))
    return BuiltLedger(data_dir, first_key, second_key, blocks, trade_ids)


def append_deal_blocks(ledger: Ledger, servicer: str, holder: str) -> None:
    """One of each deal kind (their rules: tests/ledger/test_deal_blocks.py)."""
    deal, account = "IPABS-2019-1", "venue:deal:IPABS-2019-1"
    ledger.append(
        "deal_listed",
        {"deal_id": deal, "terms": {}, "pool_balance": 10**9, "collection_account": account},
    )
    report = {
        "deal_id": deal, "period": 1, "period_start": "2026-11-01", "period_end": "2027-02-01",
        "pool_balance_start": 10**9, "asset_count": 2, "tape_root": "ab" * 32,
        "totals": {"collected": 5_000, "pool_balance": 9 * 10**8},
        "servicer_public_key": "cd" * 32, "signature": "ef" * 64, "servicer": servicer,
        "collection_account": account,
    }  # fmt: skip
    ledger.append("pool_report", report, pool_report_deltas(report))
    distribution = {
        "deal_id": deal, "period": 1, "payment_date": "2027-02-15", "collection_account": account,
        "servicer": servicer, "trustee_account": "external:trustee", "servicer_fee": 100,
        "trustee_fee": 10, "payments": [[holder, INSTRUMENTS[0], 2_000, 2_890, 0]],
        "waterfall": {}, "factors": {INSTRUMENTS[0]: 970_000},
    }  # fmt: skip
    ledger.append("distribution", distribution, distribution_deltas(distribution))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltLedger:
    return build_mixed_ledger(tmp_path_factory.mktemp("mixed") / "data")


@pytest.fixture()
def working(built: BuiltLedger, tmp_path: Path) -> BuiltLedger:
    """A private copy of the built ledger that a test may damage."""
    copy = tmp_path / "data"
    shutil.copytree(built.data_dir, copy)
    return BuiltLedger(copy, built.first_key, built.second_key, built.block_count, built.trade_ids)


@dataclass
class Located:
    height: int
    path: Path
    frame_offset: int
    payload: bytes


def locate_records(data_dir: Path, log: str = "blocks") -> list[Located]:
    return [
        Located(record.record_number, Path(record.path), record.offset, record.payload)
        for record in LogScanner(data_dir / "ledger" / log)
    ]


@contextmanager
def patched(path: Path, offset: int, new_bytes: bytes) -> Iterator[None]:
    """Overwrite bytes of ``path`` at ``offset`` for the duration of the block, then restore."""
    original = path.read_bytes()
    try:
        path.write_bytes(original[:offset] + new_bytes + original[offset + len(new_bytes) :])
        yield
    finally:
        path.write_bytes(original)


def regions(payload: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges (within the record payload) of the block's parts."""
    payload_length = HEADER.unpack_from(payload)[-1]
    deltas_start = HEADER.size + payload_length
    return {
        "header": (0, HEADER.size),
        "payload": (HEADER.size, deltas_start),
        "deltas": (deltas_start, len(payload) - 64),
        "signature": (len(payload) - 64, len(payload)),
    }


def sample_offsets(start: int, end: int, rng: random.Random, count: int) -> list[int]:
    """``count`` distinct offsets in ``[start, end)``: the edges first, then random ones."""
    picks = [start, end - 1][:count]
    while len(set(picks)) < min(count, end - start):
        picks.append(rng.randrange(start, end))
    return sorted(set(picks))


SMALL_CHUNK = 7  # records per chunk in the second run: chunk edges fall all over the ledger


def assert_fails_at(data_dir: Path, height: int, what: str) -> None:
    """Verify fails at ``height``, the same way whether the damage is inside a chunk of
    the default size or near the edge of small chunks (chunks are checked as a whole first)."""
    result = verify_ledger(data_dir, workers=1)
    assert not result.ok, f"{what}: verify passed"
    assert result.first_bad_height == height, (
        f"{what}: reported height {result.first_bad_height} ({result.problem_code}: "
        f"{result.problem}), expected {height}"
    )
    small = verify_ledger(data_dir, workers=1, chunk_records=SMALL_CHUNK)
    assert (small.first_bad_height, small.problem_code, small.problem) == (
        result.first_bad_height,
        result.problem_code,
        result.problem,
    ), f"{what}: chunks of {SMALL_CHUNK} disagree"


def test_the_built_ledger_is_mixed_large_and_verifies(built: BuiltLedger) -> None:
    assert built.block_count >= 200
    kinds = {decode_signed_block(r.payload).block.kind for r in locate_records(built.data_dir)}
    assert kinds == set(KINDS)
    result = verify_ledger(built.data_dir, workers=1)
    assert result.ok, result.problem
    assert result.blocks == built.block_count and result.checkpoints >= 5
    assert result.genesis_key_id != result.current_key_id  # the rotation took effect


def _one_record_per_kind(records: list[Located]) -> list[Located]:
    chosen: dict[str, Located] = {}
    for record in records:
        kind = decode_signed_block(record.payload).block.kind
        # the last of each kind: later than the key rotation for fills, deposits are early
        chosen[kind] = record
    return list(chosen.values())


def test_flipping_any_sampled_byte_of_every_region_of_every_kind_fails_at_its_height(
    working: BuiltLedger,
) -> None:
    rng = random.Random(2024)
    failures = []
    cases = 0
    for record in _one_record_per_kind(locate_records(working.data_dir)):
        kind = decode_signed_block(record.payload).block.kind
        frame_start = record.frame_offset
        payload_start = frame_start + RECORD_HEADER.size
        # Frame length and checksum: a plain flip is caught by the record checksum.
        plain = [("length", frame_start + o) for o in (0, 1, 3)]
        plain += [("checksum", frame_start + 4 + o) for o in (0, 2)]
        for name, (start, end) in regions(record.payload).items():
            plain.append((name, payload_start + rng.randrange(start, end)))
        original = record.path.read_bytes()
        for name, offset in plain:
            cases += 1
            flipped = bytes([original[offset] ^ 0xFF])
            with patched(record.path, offset, flipped):
                try:
                    assert_fails_at(working.data_dir, record.height, f"{kind}/{name}@{offset}")
                except AssertionError as error:
                    failures.append(str(error))
        # Block regions with the frame checksum recomputed: the signature and the chain rules
        # must catch what the checksum no longer does.
        for name, (start, end) in regions(record.payload).items():
            for offset in sample_offsets(start, end, rng, 2):
                cases += 1
                changed = bytearray(record.payload)
                changed[offset] ^= 1 << rng.randrange(8)
                with patched(record.path, frame_start, frame_record(bytes(changed))):
                    try:
                        assert_fails_at(
                            working.data_dir, record.height, f"{kind}/{name}+crc@{offset}"
                        )
                    except AssertionError as error:
                        failures.append(str(error))
    assert cases >= 8 * 16
    assert not failures, "\n".join(failures)


def _segment_surgery(working: BuiltLedger, height: int) -> tuple[Path, bytes, list[Located]]:
    records = locate_records(working.data_dir)
    path = records[height].path
    return path, path.read_bytes(), [r for r in records if r.path == path]


def _frame_bounds(record: Located) -> tuple[int, int]:
    return record.frame_offset, record.frame_offset + RECORD_HEADER.size + len(record.payload)


def test_a_dropped_block_fails_at_its_height(working: BuiltLedger) -> None:
    height = 150
    path, original, in_segment = _segment_surgery(working, height)
    start, end = _frame_bounds(next(r for r in in_segment if r.height == height))
    path.write_bytes(original[:start] + original[end:])
    assert_fails_at(working.data_dir, height, "dropped block")


def test_two_swapped_blocks_fail_at_the_first(working: BuiltLedger) -> None:
    height = 120
    path, original, in_segment = _segment_surgery(working, height)
    first = next(r for r in in_segment if r.height == height)
    second = next(r for r in in_segment if r.height == height + 1)
    (a_start, a_end), (b_start, b_end) = _frame_bounds(first), _frame_bounds(second)
    assert a_end == b_start
    swapped = original[:a_start] + original[b_start:b_end] + original[a_start:a_end]
    path.write_bytes(swapped + original[b_end:])
    assert_fails_at(working.data_dir, height, "swapped blocks")


def _resign(record: Located, signer: Signer, keep_key_id: bool) -> bytes:
    block = decode_signed_block(record.payload).block
    key_id = block.key_id if keep_key_id else signer.key_id
    forged = Block(
        block.height, block.prev_hash, block.timestamp_ns, block.kind, key_id, block.payload,
        block.deltas,
    )  # fmt: skip
    encoded = forged.encode()
    from hashlib import sha256

    return encoded + signer.sign_hash(sha256(encoded).digest())


@pytest.mark.parametrize("keep_key_id", [False, True])
def test_a_block_re_signed_with_another_key_fails(working: BuiltLedger, keep_key_id: bool) -> None:
    stranger = Signer(generate_private_key())
    for height in (30, 180):  # before and after the key rotation
        record = locate_records(working.data_dir)[height]
        frame = frame_record(_resign(record, stranger, keep_key_id))
        with patched(record.path, record.frame_offset, frame):
            assert_fails_at(working.data_dir, height, f"re-signed block {height}")
    # Re-signing with the *old* key after the rotation is caught too.
    old = Signer(working.first_key)
    record = locate_records(working.data_dir)[180]
    with patched(record.path, record.frame_offset, frame_record(_resign(record, old, False))):
        assert_fails_at(working.data_dir, 180, "block signed by the retired key")


def test_an_appended_block_signed_by_a_stranger_fails(working: BuiltLedger) -> None:
    records = locate_records(working.data_dir)
    last = records[-1]
    last_signed = decode_signed_block(last.payload)
    stranger = Signer(generate_private_key())
    payload = fill_payload("T-FORGED", INSTRUMENTS[0], "P-IB1", "P-EX1", 5)
    from ledger.block import fill_deltas

    for key_id in (stranger.key_id, last_signed.block.key_id):  # its own id, or the venue's
        block = Block(
            last.height + 1, last_signed.block_hash, last_signed.block.timestamp_ns, "fill",
            key_id, payload, fill_deltas(payload),
        )  # fmt: skip
        encoded = block.encode()
        from hashlib import sha256

        record = encoded + stranger.sign_hash(sha256(encoded).digest())
        original = last.path.read_bytes()
        try:
            last.path.write_bytes(original + frame_record(record))
            assert_fails_at(working.data_dir, last.height + 1, "appended stranger block")
        finally:
            last.path.write_bytes(original)


def _append_checkpoint(working: BuiltLedger, note: str) -> None:
    records = locate_records(working.data_dir, "checkpoints")
    path = records[-1].path
    path.write_bytes(path.read_bytes() + frame_record(note.encode("utf-8")))


def test_a_checkpoint_that_does_not_match_the_tree_fails(working: BuiltLedger) -> None:
    records = locate_records(working.data_dir)
    tree = MerkleTree.from_leaf_hashes(decode_signed_block(r.payload).leaf_hash for r in records)
    newest = locate_records(working.data_dir, "checkpoints")[-1].payload.decode()
    origin = parse_checkpoint(newest)[0].origin
    size = 170  # after the rotation: signed by the key in force, but the root is wrong
    wrong = sign_checkpoint(make_checkpoint(origin, size, tree.root(size - 1)), working.second_key)
    _append_checkpoint(working, wrong)
    result = verify_ledger(working.data_dir, workers=1)
    assert not result.ok and result.problem_code == "audit.checkpoint_mismatch"
    assert result.first_bad_height == size - 1


def test_a_checkpoint_signed_by_a_stranger_or_beyond_the_log_fails(working: BuiltLedger) -> None:
    records = locate_records(working.data_dir)
    tree = MerkleTree.from_leaf_hashes(decode_signed_block(r.payload).leaf_hash for r in records)
    origin = parse_checkpoint(locate_records(working.data_dir, "checkpoints")[0].payload.decode())[
        0
    ].origin
    stranger = generate_private_key()
    _append_checkpoint(
        working, sign_checkpoint(make_checkpoint(origin, 50, tree.root(50)), stranger)
    )
    result = verify_ledger(working.data_dir, workers=1)
    assert not result.ok and result.problem_code == "audit.bad_checkpoint"


def test_a_checkpoint_beyond_the_blocks_fails(working: BuiltLedger) -> None:
    records = locate_records(working.data_dir)
    tree = MerkleTree.from_leaf_hashes(decode_signed_block(r.payload).leaf_hash for r in records)
    origin = parse_checkpoint(locate_records(working.data_dir, "checkpoints")[0].payload.decode())[
        0
    ].origin
    # Cut the last block but keep a checkpoint that covered it: a dropped tail is detected.
    last = records[-1]
    _append_checkpoint(
        working,
        sign_checkpoint(make_checkpoint(origin, tree.size, tree.root()), working.second_key),
    )
    original = last.path.read_bytes()
    last.path.write_bytes(original[: last.frame_offset])
    assert_fails_at(working.data_dir, last.height, "checkpoint beyond the blocks")


def test_a_checkpoint_of_size_zero_fails_at_genesis(working: BuiltLedger) -> None:
    """Checked right after block 0, as a block-by-block check would: chunks end there too."""
    from ledger.hasher import EMPTY_ROOT

    origin = parse_checkpoint(locate_records(working.data_dir, "checkpoints")[0].payload.decode())[
        0
    ].origin
    _append_checkpoint(
        working, sign_checkpoint(make_checkpoint(origin, 0, EMPTY_ROOT), working.first_key)
    )
    assert_fails_at(working.data_dir, 0, "checkpoint of size 0")
    record = locate_records(working.data_dir)[5]  # a later problem must not be named first
    changed = bytearray(record.payload)
    changed[-1] ^= 1
    with patched(record.path, record.frame_offset, frame_record(bytes(changed))):
        assert_fails_at(working.data_dir, 0, "checkpoint of size 0 and a bad block 5")
        result = verify_ledger(working.data_dir, workers=1, chunk_records=1)
        assert (result.first_bad_height, result.problem_code) == (0, "audit.checkpoint_mismatch")


def test_a_checkpoint_from_another_origin_fails(working: BuiltLedger) -> None:
    records = locate_records(working.data_dir)
    tree = MerkleTree.from_leaf_hashes(decode_signed_block(r.payload).leaf_hash for r in records)
    note = sign_checkpoint(
        make_checkpoint("other.example/log", tree.size, tree.root()), working.second_key
    )
    _append_checkpoint(working, note)
    result = verify_ledger(working.data_dir, workers=1)
    assert not result.ok and result.problem_code == "audit.bad_checkpoint"
    assert "origin" in (result.problem or "")


def append_signed_blocks(working: BuiltLedger, blocks: list[tuple[str, dict]]) -> int:
    """Append validly signed, correctly linked blocks (kind, payload) with the key in force;
    returns the height of the first one."""
    from hashlib import sha256

    from ledger.block import fill_deltas, validate_block, withdrawal_deltas

    last = locate_records(working.data_dir)[-1]
    previous = decode_signed_block(last.payload)
    signer = Signer(working.second_key)  # the key in force at the end
    frames = []
    for offset, (kind, payload) in enumerate(blocks, start=1):
        if kind == "fill":
            deltas = fill_deltas(payload)
        elif kind == "withdrawal":
            deltas = withdrawal_deltas(
                payload["account"], payload["asset"], payload["amount"], payload["destination"]
            )
        else:
            deltas = deposit_deltas(
                payload["account"], payload["asset"], payload["amount"], payload["source"]
            )
        block = Block(
            last.height + offset, previous.block_hash, previous.block.timestamp_ns, kind,
            signer.key_id, payload, deltas,
        )  # fmt: skip
        validate_block(block)
        encoded = block.encode()
        record = encoded + signer.sign_hash(sha256(encoded).digest())
        previous = decode_signed_block(record)
        frames.append(frame_record(record))
    last.path.write_bytes(last.path.read_bytes() + b"".join(frames))
    return last.height + 1


def assert_every_mode_fails_at(working: BuiltLedger, height: int, code: str) -> None:
    for workers, executor, chunk in (
        (1, "process", 1024), (1, "process", 1), (1, "process", SMALL_CHUNK),
        (2, "process", SMALL_CHUNK), (2, "thread", 1024),
    ):  # fmt: skip
        result = verify_ledger(
            working.data_dir, workers=workers, executor=executor, chunk_records=chunk
        )
        assert not result.ok and result.first_bad_height == height, (workers, executor, chunk)
        assert result.problem_code == code


UNITS_WITHDRAWAL = {
    "account": "P-EX2",
    "asset": INSTRUMENTS[0],
    "amount": 10**9,  # far more units than P-EX2 holds
    "destination": "external:issuer",
}


def test_a_validly_signed_overdraft_fails_at_its_height(working: BuiltLedger) -> None:
    """Even a block signed by the venue key is refused by the audit if it overdraws."""
    height = append_signed_blocks(working, [("withdrawal", UNITS_WITHDRAWAL)])
    assert_every_mode_fails_at(working, height, "block.negative_balance")


def test_an_overdraft_made_good_by_the_next_block_still_fails(working: BuiltLedger) -> None:
    """Within one chunk the account first gains, then overdraws, then is made good: the net
    change is positive, but the balance went negative in between."""
    small, large = (
        {**UNITS_WITHDRAWAL, "amount": amount, "source": "external:issuer"}
        for amount in (1, 2 * 10**9)
    )
    for deposit in (small, large):
        del deposit["destination"]
    height = append_signed_blocks(
        working, [("deposit", small), ("withdrawal", UNITS_WITHDRAWAL), ("deposit", large)]
    )
    assert_every_mode_fails_at(working, height + 1, "block.negative_balance")


@pytest.mark.parametrize("reused", [0, -1])  # a trade far back, and the one just before
def test_a_validly_signed_fill_reusing_a_trade_id_fails(working: BuiltLedger, reused: int) -> None:
    payload = fill_payload(working.trade_ids[reused], INSTRUMENTS[0], "P-IB1", "P-EX1", 5)
    height = append_signed_blocks(working, [("fill", payload)])
    assert_every_mode_fails_at(working, height, "audit.duplicate_trade")


@pytest.mark.parametrize("chunk", [1, 2, 3, SMALL_CHUNK, 64, 1024])
def test_every_chunk_size_verifies_the_same_ledger_identically(
    built: BuiltLedger, chunk: int
) -> None:
    reference = verify_ledger(built.data_dir, workers=1)
    result = verify_ledger(built.data_dir, workers=1, chunk_records=chunk)
    assert result.ok and reference.ok
    summary = (result.blocks, result.root_hash, result.current_key_id, result.balances)
    assert summary == (
        reference.blocks,
        reference.root_hash,
        reference.current_key_id,
        reference.balances,
    )
    records = locate_records(built.data_dir)
    tree = MerkleTree.from_leaf_hashes(decode_signed_block(r.payload).leaf_hash for r in records)
    assert result.root_hash == tree.root().hex()
