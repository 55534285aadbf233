"""Block encoding, strict decoding, signing and the per-kind validation rules."""

from __future__ import annotations

import struct
from hashlib import sha256
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.block import (
    GENESIS_PREV_HASH,
    HEADER,
    KEY_KIND_CODES,
    KEY_KINDS,
    KIND_CODES,
    KIND_OFFSET,
    KINDS,
    Block,
    BlockError,
    CheckedFill,
    Delta,
    Signer,
    apply_deltas,
    check_block_rules,
    check_fill_record,
    check_key_rotation,
    check_non_negative,
    check_signing_key,
    decode_block,
    decode_signed_block,
    deposit_deltas,
    distribution_deltas,
    encode_block,
    fill_deltas,
    introduced_key,
    is_external_account,
    is_participant_account,
    make_deltas,
    next_signing_key,
    pool_report_deltas,
    validate_and_encode,
    validate_block,
    validate_successor,
    verify_block_signature,
    withdrawal_deltas,
)
from ledger.keys import generate_private_key, public_key_bytes, public_key_to_text

SIGNER = Signer(generate_private_key())
OTHER = Signer(generate_private_key())
T0 = 1_764_158_400_000_000_000


def fill_payload(**changes: object) -> dict:
    payload = {
        "trade_id": "T-1",
        "instrument": "IPABS-2019-1-A",
        "price": 998_750,
        "qty": 1_000,
        "accrued": 12_345,
        "factor": 950_000,
        "settlement_amount": 9_500_000,
        "buyer_fee": 950,
        "seller_fee": -190,
        "maker_order_id": 17,
        "taker_order_id": "O-9",
        "buyer": "P-MM1",
        "seller": "P-BR2",
        "buyer_segment": "interbank",
        "seller_segment": "exchange",
        "aggressor": "buy",
        "timestamp_ns": T0,
    }
    payload.update(changes)
    return payload


def make_block(kind: str, payload: dict, deltas=(), height: int = 1, signer=SIGNER) -> Block:
    prev = GENESIS_PREV_HASH if kind == "genesis" else b"\x11" * 32
    return Block(height, prev, T0 + height, kind, signer.key_id, payload, tuple(deltas))


def sample_blocks() -> list[Block]:
    """One valid block of every kind."""
    fill = fill_payload()
    new_key = public_key_to_text(OTHER.public_key)
    return [
        make_block(
            "genesis",
            {
                "venue": "ABS Venue",
                "origin": "abs-venue.example/ledger",
                "public_key": public_key_to_text(SIGNER.public_key),
                "params": {"checkpoint_every": 100, "fee_bps": [1, -2]},
            },
            height=0,
        ),
        make_block(
            "instrument_listed",
            {
                "symbol": "IPABS-2019-1-A",
                "currency": "CNY",
                "face_per_unit": 10_000,
                "tick_size": "0.0001",
                "pool_factor": 1_000_000,
                "min_qty": 10,
                "reference": {"tranche_class": "senior", "isin": None, "rating": "AAA"},
            },
        ),
        make_block(
            "participant_admitted",
            {"participant_id": "P-MM1", "segment": "interbank", "role": "market_maker"},
        ),
        make_block(
            "deposit",
            {"account": "P-MM1", "asset": "CNY", "amount": 10**9, "source": "external:bank"},
            deposit_deltas("P-MM1", "CNY", 10**9),
        ),
        make_block(
            "withdrawal",
            {"account": "P-MM1", "asset": "CNY", "amount": 5, "destination": "external:bank"},
            withdrawal_deltas("P-MM1", "CNY", 5),
        ),
        make_block("fill", fill, fill_deltas(fill)),
        make_block("factor_update", {"instrument": "IPABS-2019-1-A", "factor": 950_000}),
        make_block("key_rotation", {"new_public_key": new_key, "reason": "scheduled"}),
        make_block(
            "instrument_updated",
            {
                "symbol": "IPABS-2019-1-A",
                "change": "coupon_roll",
                "effective_date": "2027-02-15",
                "reference": {"accrual_start": "2027-02-15", "next_coupon_date": "2027-05-15"},
            },
        ),
        make_block(
            "deal_listed",
            {
                "deal_id": "IPABS-2019-1",
                "terms": {"tranches": []},
                "pool_balance": 10**9,
                "collection_account": "venue:deal:IPABS-2019-1",
            },
        ),
        make_block("pool_report", POOL_REPORT, pool_report_deltas(POOL_REPORT)),
        make_block("distribution", DISTRIBUTION, distribution_deltas(DISTRIBUTION)),
    ]


# A deal's blocks (field by field in tests/ledger/test_deal_blocks.py)
POOL_REPORT = {
    "deal_id": "IPABS-2019-1", "period": 1, "period_start": "2026-11-01",
    "period_end": "2027-02-01", "pool_balance_start": 10**9, "asset_count": 2,
    "tape_root": "ab" * 32, "totals": {"collected": 5_000, "pool_balance": 9 * 10**8},
    "servicer_public_key": "cd" * 32, "signature": "ef" * 64, "servicer": "P-SRV1",
    "collection_account": "venue:deal:IPABS-2019-1",
}  # fmt: skip
DISTRIBUTION = {
    "deal_id": "IPABS-2019-1", "period": 1, "payment_date": "2027-02-15",
    "collection_account": "venue:deal:IPABS-2019-1", "servicer": "P-SRV1",
    "trustee_account": "external:trustee:IPABS-2019-1", "servicer_fee": 100, "trustee_fee": 10,
    "payments": [["P-MM1", "IPABS-2019-1-A", 2_000, 2_500, 0],
                 ["external:issuer", "IPABS-2019-1-A", 190, 200, 0]],
    "waterfall": {"available": 5_000}, "factors": {"IPABS-2019-1-A": 990_000},
}  # fmt: skip


def test_a_clerk_or_operator_is_admitted_without_a_segment_and_traders_need_one() -> None:
    for role in ("clerk", "operator", "servicer"):
        validate_block(
            make_block(
                "participant_admitted", {"participant_id": "P-CLK1", "segment": None, "role": role}
            )
        )
        with pytest.raises(BlockError):
            validate_block(
                make_block(
                    "participant_admitted",
                    {"participant_id": "P-CLK1", "segment": "exchange", "role": role},
                )
            )
    with pytest.raises(BlockError):
        validate_block(
            make_block(
                "participant_admitted",
                {"participant_id": "P-B1", "segment": None, "role": "broker"},
            )
        )


def test_instrument_updated_takes_no_deltas_and_a_known_change() -> None:
    payload = {"symbol": "IPABS-2019-1-A", "change": "status", "reference": {"status": "halted"}}
    validate_block(make_block("instrument_updated", payload))
    with pytest.raises(BlockError):
        validate_block(make_block("instrument_updated", {**payload, "change": "rename"}))
    with pytest.raises(BlockError):
        validate_block(
            make_block("instrument_updated", payload, [("P-MM1", "CNY", 1), ("P-MM2", "CNY", -1)])
        )


def test_every_kind_round_trips_encode_decode_sign_verify() -> None:
    blocks = sample_blocks()
    assert [block.kind for block in blocks] == list(KINDS)
    for block in blocks:
        validate_block(block)
        signed = SIGNER.sign(block)
        record = signed.to_bytes()
        decoded = decode_signed_block(record)
        assert decoded.block == block
        assert decoded.encoded == encode_block(block) == block.encode()
        assert decoded.block_hash == signed.block_hash
        assert decoded.to_bytes() == record
        verify_block_signature(decoded, SIGNER.public_key)


def test_encoding_layout_matches_the_documented_header() -> None:
    block = sample_blocks()[3]
    encoded = encode_block(block)
    magic, version, kind, height, timestamp, prev, key, length = HEADER.unpack_from(encoded)
    assert (magic, version, kind, height, timestamp) == (b"ABSL", 1, 3, 1, T0 + 1)
    assert prev == b"\x11" * 32 and key.hex() == SIGNER.key_id
    payload = encoded[HEADER.size : HEADER.size + length]
    assert payload == (
        b'{"account":"P-MM1","amount":1000000000,"asset":"CNY","source":"external:bank"}'
    )
    rest = encoded[HEADER.size + length :]
    assert rest[:4] == struct.pack(">I", 2)
    assert rest[4:] == (
        b"\x00\x05P-MM1\x00\x03CNY" + struct.pack(">q", 10**9)
        + b"\x00\x0dexternal:bank\x00\x03CNY" + struct.pack(">q", -(10**9))
    )  # fmt: skip


def _replace_payload(encoded: bytes, payload: bytes) -> bytes:
    length = HEADER.unpack_from(encoded)[-1]
    header = encoded[: HEADER.size - 4] + struct.pack(">I", len(payload))
    return header + payload + encoded[HEADER.size + length :]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"amount":1000000000, "account":"P-MM1"}', "block.noncanonical_payload"),
        (b'{"account":"P-MM1","account":"P-MM1"}', "block.noncanonical_payload"),
        (b'{"amount":1.5}', "block.bad_payload"),
        (b'{"amount":1e3}', "block.bad_payload"),
        (b'{"amount":NaN}', "block.bad_payload"),
        (b"[1,2]", "block.bad_payload"),
        (b'{"a":"\xff"}', "block.bad_payload"),
        (b"{", "block.bad_payload"),
        (b'{"big":9223372036854775808}', "block.bad_field"),
        (b'{"small":-9223372036854775809}', "block.bad_field"),
    ],
)
def test_non_canonical_or_non_integer_payloads_are_refused(payload: bytes, code: str) -> None:
    encoded = _replace_payload(encode_block(sample_blocks()[3]), payload)
    with pytest.raises(BlockError) as caught:
        decode_block(encoded)
    assert caught.value.code == code


def test_strict_decoding_of_structure() -> None:
    encoded = encode_block(sample_blocks()[5])
    cases = {
        "block.bad_magic": b"XBSL" + encoded[4:],
        "block.bad_version": encoded[:4] + b"\x02" + encoded[5:],
        "block.bad_kind": encoded[:5] + bytes([len(KINDS)]) + encoded[6:],
        "block.trailing_bytes": encoded + b"\x00",
        "block.truncated": encoded[:-1],
    }
    for code, data in cases.items():
        with pytest.raises(BlockError) as caught:
            decode_block(data)
        assert caught.value.code == code, code
    for cut in range(0, len(encoded), 13):
        with pytest.raises(BlockError):
            decode_block(encoded[:cut])
    record = SIGNER.sign(sample_blocks()[5]).to_bytes()
    with pytest.raises(BlockError) as short:
        decode_signed_block(record[:-1])
    assert short.value.code == "block.truncated"
    with pytest.raises(BlockError) as long:
        decode_signed_block(record + b"\x00")
    assert long.value.code == "block.trailing_bytes"


def test_deltas_must_be_canonical_on_decode() -> None:
    block = sample_blocks()[3]
    encoded = encode_block(block)
    first_size, second_size = 2 + 5 + 2 + 3 + 8, 2 + 13 + 2 + 3 + 8  # P-MM1, external:bank
    start = len(encoded) - first_size - second_size
    first, second = encoded[start : start + first_size], encoded[start + first_size :]
    swapped = encoded[:start] + second + first
    with pytest.raises(BlockError) as caught:
        decode_block(swapped)
    assert caught.value.code == "block.noncanonical_deltas"
    zero = encoded[:-8] + struct.pack(">q", 0)
    with pytest.raises(BlockError) as zero_caught:
        decode_block(zero)
    assert zero_caught.value.code == "block.bad_field"


@pytest.mark.parametrize(
    "payload",
    [
        {"amount": 1.5},
        {"amount": float("nan")},
        {"nested": {"x": [1, 2.0]}},
        {1: "non-string key"},
        {"big": 2**63},
        {"obj": object()},
    ],
)
def test_encode_refuses_non_canonical_values(payload: dict) -> None:
    block = make_block("factor_update", payload)
    with pytest.raises(BlockError) as caught:
        encode_block(block)
    assert caught.value.code == "block.bad_field"


def test_make_deltas_merges_drops_zeros_and_sorts() -> None:
    deltas = make_deltas([("b", "CNY", 5), ("a", "X", 1), ("b", "CNY", -2), ("c", "CNY", 0)])
    assert deltas == (Delta("a", "X", 1), Delta("b", "CNY", 3))


def test_fill_deltas_are_dvp_with_fees() -> None:
    deltas = {(d.account, d.asset): d.amount for d in fill_deltas(fill_payload())}
    assert deltas == {
        ("P-MM1", "CNY"): -(9_500_000 + 950),
        ("P-BR2", "CNY"): 9_500_000 + 190,
        ("venue:fees", "CNY"): 950 - 190,
        ("P-MM1", "IPABS-2019-1-A"): 1_000,
        ("P-BR2", "IPABS-2019-1-A"): -1_000,
    }
    no_fees = fill_deltas(fill_payload(buyer_fee=0, seller_fee=0))
    assert all(d.account != "venue:fees" for d in no_fees)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"price": 1.5}, "block.bad_field"),
        ({"price": 0}, "block.bad_field"),
        ({"qty": True}, "block.bad_field"),
        ({"factor": 1_000_001}, "block.bad_field"),
        ({"buyer_segment": "otc"}, "block.bad_field"),
        ({"aggressor": "both"}, "block.bad_field"),
        ({"seller": "P-MM1"}, "block.bad_field"),
        ({"buyer": "venue:fees"}, "block.bad_field"),
        ({"buyer": "has space"}, "block.bad_field"),
        ({"instrument": "CNY"}, "block.bad_field"),
        ({"extra": 1}, "block.bad_field"),
    ],
)
def test_fill_schema_violations(changes: dict, code: str) -> None:
    payload = fill_payload(**changes)
    block = make_block("fill", payload, fill_deltas(fill_payload()))
    with pytest.raises(BlockError) as caught:
        validate_block(block)
    assert caught.value.code == code


def test_missing_fill_field_is_refused() -> None:
    payload = fill_payload()
    del payload["accrued"]
    with pytest.raises(BlockError, match="accrued"):
        validate_block(make_block("fill", payload, fill_deltas(fill_payload())))


def test_fill_with_wrong_deltas_is_not_dvp() -> None:
    payload = fill_payload()
    honest = fill_deltas(payload)
    skimmed = make_deltas([*honest, ("venue:fees", "CNY", 1), ("P-BR2", "CNY", -1)])
    with pytest.raises(BlockError) as caught:
        validate_block(make_block("fill", payload, skimmed))
    assert caught.value.code == "block.not_dvp"


def test_unbalanced_deltas_are_not_conserved() -> None:
    listing = sample_blocks()[1]
    unbalanced = make_block(listing.kind, listing.payload, make_deltas([("P-1", "X", 5)]))
    with pytest.raises(BlockError) as caught:
        validate_block(unbalanced)
    assert caught.value.code == "block.not_conserved"
    issuance = make_deltas([("P-1", "X", 5), ("external:issuer", "X", -5)])
    validate_block(make_block(listing.kind, listing.payload, issuance))


def test_kinds_without_deltas_refuse_them() -> None:
    for block in sample_blocks():
        if block.kind in ("participant_admitted", "key_rotation"):
            moved = make_deltas([("P-1", "CNY", 1), ("P-2", "CNY", -1)])
            with pytest.raises(BlockError) as caught:
                validate_block(make_block(block.kind, block.payload, moved))
            assert caught.value.code == "block.bad_deltas"


def test_deposit_must_move_exactly_its_amount() -> None:
    payload = {"account": "P-1", "asset": "CNY", "amount": 100, "source": "external:bank"}
    validate_block(make_block("deposit", payload, deposit_deltas("P-1", "CNY", 100)))
    with pytest.raises(BlockError) as caught:
        validate_block(make_block("deposit", payload, deposit_deltas("P-1", "CNY", 99)))
    assert caught.value.code == "block.bad_deltas"
    bad_source = {**payload, "source": "P-2"}
    with pytest.raises(BlockError):
        validate_block(make_block("deposit", bad_source, deposit_deltas("P-1", "CNY", 100, "P-2")))


def test_genesis_rules() -> None:
    genesis = sample_blocks()[0]
    validate_block(genesis)
    wrong_signer = Block(0, GENESIS_PREV_HASH, T0, "genesis", OTHER.key_id, genesis.payload, ())
    with pytest.raises(BlockError) as caught:
        validate_block(wrong_signer)
    assert caught.value.code == "block.wrong_key"
    late = Block(3, GENESIS_PREV_HASH, T0, "genesis", SIGNER.key_id, genesis.payload, ())
    with pytest.raises(BlockError):
        validate_block(late)


def test_successor_rules() -> None:
    genesis = SIGNER.sign(sample_blocks()[0])
    validate_successor(None, genesis.block)
    nxt = Block(1, genesis.block_hash, T0, "factor_update", SIGNER.key_id, {}, ())
    validate_successor(genesis, nxt)
    with pytest.raises(BlockError) as first:
        validate_successor(None, nxt)
    assert first.value.code == "block.bad_height"
    gap = Block(2, genesis.block_hash, T0, "factor_update", SIGNER.key_id, {}, ())
    with pytest.raises(BlockError) as height:
        validate_successor(genesis, gap)
    assert height.value.code == "block.bad_height"
    unlinked = Block(1, b"\x00" * 32, T0, "factor_update", SIGNER.key_id, {}, ())
    with pytest.raises(BlockError) as link:
        validate_successor(genesis, unlinked)
    assert link.value.code == "block.bad_link"


def test_key_rotation_hands_over_to_the_new_key() -> None:
    by_kind = {block.kind: block for block in sample_blocks()}
    genesis, rotation = by_kind["genesis"], by_kind["key_rotation"]
    key = next_signing_key(genesis, None)
    check_signing_key(rotation, key)  # the rotation is signed by the old key
    new_key = next_signing_key(rotation, key)
    assert public_key_to_text(new_key) == public_key_to_text(OTHER.public_key)
    after = make_block("factor_update", {"instrument": "X", "factor": 1}, signer=SIGNER)
    with pytest.raises(BlockError) as caught:
        check_signing_key(after, new_key)
    assert caught.value.code == "block.wrong_key"
    check_signing_key(make_block("factor_update", {}, signer=OTHER), new_key)
    same = make_block("key_rotation", {"new_public_key": public_key_to_text(SIGNER.public_key)})
    with pytest.raises(BlockError):
        next_signing_key(same, key)


def test_signature_checks() -> None:
    signed = SIGNER.sign(sample_blocks()[5])
    with pytest.raises(BlockError) as wrong:
        verify_block_signature(signed, OTHER.public_key)
    assert wrong.value.code == "block.wrong_key"
    flipped = bytearray(signed.to_bytes())
    flipped[-1] ^= 1
    with pytest.raises(BlockError) as bad:
        verify_block_signature(decode_signed_block(bytes(flipped)), SIGNER.public_key)
    assert bad.value.code == "block.bad_signature"
    with pytest.raises(BlockError) as mismatch:
        OTHER.sign(sample_blocks()[5])
    assert mismatch.value.code == "block.wrong_key"


def test_apply_deltas_refuses_negative_balances_atomically() -> None:
    balances: dict[tuple[str, str], int] = {}
    apply_deltas(balances, deposit_deltas("P-1", "CNY", 100))
    assert balances == {("P-1", "CNY"): 100, ("external:bank", "CNY"): -100}
    before = dict(balances)
    overdraw = make_deltas([("P-1", "CNY", -101), ("P-2", "CNY", 101)])
    with pytest.raises(BlockError) as caught:
        apply_deltas(balances, overdraw)
    assert caught.value.code == "block.negative_balance"
    assert balances == before


def test_the_no_negative_balance_rule_spares_only_external_accounts() -> None:
    balances = {("P-1", "CNY"): 5}
    check_non_negative(balances, [("P-1", "CNY", -5), ("external:bank", "CNY", -7)])
    for account in ("P-1", "venue:fees", "P-2"):
        with pytest.raises(BlockError) as caught:
            check_non_negative(balances, [(account, "CNY", -6)])
        assert caught.value.code == "block.negative_balance"
        assert f"{account} would hold" in caught.value.message
    assert balances == {("P-1", "CNY"): 5}  # checking changes nothing
    assert is_external_account("external:issuer") and not is_external_account("P-external:x")
    assert is_participant_account("P-MM1")
    assert not is_participant_account("venue:fees") and not is_participant_account("external:x")


def test_introduced_key_names_the_key_genesis_and_rotations_bring_in() -> None:
    by_kind = {block.kind: block for block in sample_blocks()}
    assert introduced_key(by_kind["genesis"]) == public_key_bytes(SIGNER.public_key)
    assert introduced_key(by_kind["key_rotation"]) == public_key_bytes(OTHER.public_key)
    for kind, block in by_kind.items():
        assert (introduced_key(block) is not None) == (kind in KEY_KINDS)
    broken = by_kind["key_rotation"]._replace(payload={"new_public_key": "AB" * 32})
    with pytest.raises(BlockError) as caught:
        introduced_key(broken)
    assert caught.value.code == "block.bad_field"
    assert {KIND_CODES[kind] for kind in KEY_KINDS} == KEY_KIND_CODES
    record = SIGNER.sign(by_kind["genesis"]).to_bytes()
    assert record[KIND_OFFSET] == KIND_CODES["genesis"]
    with pytest.raises(BlockError):
        check_key_rotation(public_key_bytes(SIGNER.public_key), public_key_bytes(SIGNER.public_key))


DOCS = Path(__file__).resolve().parents[2] / "docs" / "LEDGER.md"


def test_the_worked_example_in_the_docs_is_exact() -> None:
    """docs/LEDGER.md shows one block byte by byte; our encoder, hash and signer must agree."""
    text = DOCS.read_text()
    section = text.split("<!-- block-example:start -->")[1].split("<!-- block-example:end -->")[0]
    hex_fields = [
        line.split()[0] for line in section.splitlines() if line and line[0] in "0123456789abcdef"
    ]
    documented = bytes.fromhex("".join(hex_fields))
    signer = Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    payload = {"account": "P-MM1", "asset": "CNY", "amount": 100_000_000, "source": "external:bank"}
    block = Block(
        7, sha256(b"block 6").digest(), 1_764_158_400_000_000_000, "deposit", signer.key_id,
        payload, deposit_deltas("P-MM1", "CNY", 100_000_000),
    )  # fmt: skip
    signed = signer.sign(block)
    assert signed.encoded == documented and len(documented) == 195
    assert decode_block(documented) == block
    for value in (
        signer.key_id,
        public_key_to_text(signer.public_key),
        signed.block_hash.hex(),
        signed.signature.hex(),
        signed.leaf_hash.hex(),
    ):
        assert value in text


def test_validate_and_encode_matches_the_two_step_path() -> None:
    for block in sample_blocks():
        assert validate_and_encode(block) == encode_block(block)
    bad_fill = make_block("fill", fill_payload(price=0), fill_deltas(fill_payload()))
    with pytest.raises(BlockError):
        validate_and_encode(bad_fill)
    listing = sample_blocks()[1]
    floaty = {**listing.payload, "reference": {"coupon_rate": 4.5}}
    with pytest.raises(BlockError) as caught:
        validate_and_encode(make_block("instrument_listed", floaty))
    assert caught.value.code == "block.bad_field"


_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9:._/@\-]{0,12}", fullmatch=True)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    reference=st.dictionaries(st.text(max_size=8), _json_values, max_size=4),
    issued=st.lists(st.tuples(_names, st.integers(1, 2**40)), max_size=4),
    data=st.data(),
)
def test_any_listing_round_trips_and_any_byte_flip_is_detected(
    reference: dict, issued: list, data: st.DataObject
) -> None:
    listing = sample_blocks()[1]
    payload = {**listing.payload, "reference": reference}
    deltas = make_deltas(
        [(holder, "IPABS-X", amount) for holder, amount in issued]
        + [("external:issuer", "IPABS-X", -amount) for _, amount in issued]
    )
    block = make_block("instrument_listed", payload, deltas)
    validate_block(block)
    signed = SIGNER.sign(block)
    decoded = decode_signed_block(signed.to_bytes())
    assert decoded.block == block and decoded.encoded == signed.encoded
    position = data.draw(st.integers(0, len(signed.encoded) - 1))
    flipped = bytearray(signed.encoded)
    flipped[position] ^= data.draw(st.integers(1, 255))
    try:
        changed = decode_signed_block(bytes(flipped) + signed.signature)
    except BlockError:
        return  # refused outright
    assert changed.block_hash != signed.block_hash
    with pytest.raises(BlockError):
        verify_block_signature(changed, SIGNER.public_key)


@settings(max_examples=200, deadline=None)
@given(
    ints=st.lists(st.integers(1, 2**50), min_size=8, max_size=8),
    fees=st.tuples(st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40)),
    order_ids=st.tuples(st.integers(0, 2**63 - 1) | _names, st.integers(0, 2**63 - 1) | _names),
    names=st.lists(_names, min_size=3, max_size=3, unique=True),
    segments=st.tuples(
        st.sampled_from(["interbank", "exchange"]), st.sampled_from(["interbank", "exchange"])
    ),
    aggressor=st.sampled_from(["buy", "sell"]),
)
def test_the_fast_fill_json_equals_the_canonical_json(
    ints: list[int],
    fees: tuple,
    order_ids: tuple,
    names: list[str],
    segments: tuple,
    aggressor: str,
) -> None:
    from ledger import block as block_module

    price, qty, accrued, amount, timestamp = ints[:5]
    payload = fill_payload(
        price=price, qty=qty, accrued=accrued, settlement_amount=amount, timestamp_ns=timestamp,
        factor=1 + ints[5] % 1_000_000, buyer_fee=fees[0], seller_fee=fees[1],
        maker_order_id=order_ids[0], taker_order_id=order_ids[1], trade_id=names[0],
        buyer=f"P-{names[1]}", seller=f"Q-{names[2]}", buyer_segment=segments[0],
        seller_segment=segments[1], aggressor=aggressor,
    )  # fmt: skip
    block = make_block("fill", payload, fill_deltas(payload))
    validate_block(block)
    assert block_module._validated_fill_json(payload) == block_module._canonical_json(
        payload
    ).encode("ascii")
    assert validate_and_encode(block) == encode_block(block)


# --------------------------------------------------------------------------- fast fill path


def reference_fill_facts(record: bytes) -> CheckedFill | None:
    """What the reference path (strict decode + rules) says about a fill record, in the fast
    path's shape; None if it refuses the record or the record is not a fill."""
    try:
        signed = decode_signed_block(record)
        check_block_rules(signed.block)
    except BlockError:
        return None
    block = signed.block
    if block.kind != "fill":
        return None
    return CheckedFill(
        block.height,
        block.prev_hash,
        bytes.fromhex(block.key_id),
        signed.block_hash,
        signed.signature,
        block.payload["trade_id"],
        tuple((delta.account, delta.asset) for delta in block.deltas),
        tuple(delta.amount for delta in block.deltas),
    )


def assert_fast_path_agrees(record: bytes) -> CheckedFill | None:
    """The fast path may decline anything, but what it accepts the reference accepts, equally."""
    fast = check_fill_record(record)
    if fast is not None:
        assert fast == reference_fill_facts(record)
    return fast


def signed_fill_record(payload: dict, deltas: tuple | None = None) -> bytes:
    deltas = fill_deltas(payload) if deltas is None else deltas
    return SIGNER.sign(make_block("fill", payload, deltas)).to_bytes()


def resign(encoded: bytes) -> bytes:
    return encoded + SIGNER.sign_hash(sha256(encoded).digest())


def test_the_fast_path_accepts_a_valid_fill_with_the_reference_facts() -> None:
    for payload in (
        fill_payload(),
        fill_payload(buyer_fee=0, seller_fee=0),
        fill_payload(seller_fee=9_500_000),
        fill_payload(maker_order_id="O-1"),
    ):
        assert assert_fast_path_agrees(signed_fill_record(payload)) is not None


def test_the_fast_path_leaves_rare_valid_numbers_to_the_reference() -> None:
    for changes in ({"timestamp_ns": 2**63 - 1}, {"maker_order_id": -(10**18)}):
        record = signed_fill_record(fill_payload(**changes))
        assert check_fill_record(record) is None
        assert reference_fill_facts(record) is not None


def test_the_fast_path_declines_every_other_kind() -> None:
    for block in sample_blocks():
        if block.kind != "fill":
            assert check_fill_record(SIGNER.sign(block).to_bytes()) is None


@pytest.mark.parametrize(
    "payload",
    [
        b'{"accrued":12345, "aggressor":"buy"}',
        b'{"accrued":-0}',
    ],
)
def test_the_fast_path_declines_a_foreign_payload(payload: bytes) -> None:
    fill = make_block("fill", fill_payload(), fill_deltas(fill_payload()))
    encoded = _replace_payload(encode_block(fill), payload)
    assert check_fill_record(resign(encoded)) is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"accrued":12345', b'"accrued":012345'),  # leading zero
        (b'"accrued":12345', b'"accrued": 12345'),  # whitespace
        (b'"buyer_fee":950', b'"buyer_fee":-0'),  # signed zero
        (b'"factor":950000', b'"factor":1000001'),  # above 1.0
        (b'"factor":950000', b'"factor":0'),
        (b'"price":998750', b'"price":0'),
        (b'"price":998750', b'"price":9.5'),
        (b'"qty":1000', b'"qty":1e3'),
        (b'"trade_id":"T-1"', b'"trade_id":"T\\u002d1"'),  # an escape the writer never uses
        (b'"maker_order_id":17', b'"maker_order_id":true'),
        (b'"timestamp_ns":1764158400000000000', b'"timestamp_ns":9223372036854775808'),
        (b'"seller":"P-BR2"', b'"seller":"P-MM1"'),  # buyer == seller
        (b'"seller":"P-BR2"', b'"seller":"venue:fees"'),
        (b'"instrument":"IPABS-2019-1-A"', b'"instrument":"CNY"'),
        (b'"aggressor":"buy"', b'"aggressor":"BUY"'),
        (b'"trade_id":"T-1"}', b'"trade_id":"T-1","x":1}'),  # unknown field
    ],
)
def test_the_fast_path_declines_what_the_reference_refuses(old: bytes, new: bytes) -> None:
    encoded = SIGNER.sign(make_block("fill", fill_payload(), fill_deltas(fill_payload()))).encoded
    length = HEADER.unpack_from(encoded)[-1]
    payload = encoded[HEADER.size : HEADER.size + length]
    assert old in payload
    record = resign(_replace_payload(encoded, payload.replace(old, new)))
    assert check_fill_record(record) is None
    assert reference_fill_facts(record) is None


def test_the_fast_path_declines_wrong_or_non_canonical_deltas() -> None:
    payload = fill_payload()
    right = fill_deltas(payload)
    wrong = (*right[:-1], Delta(right[-1].account, right[-1].asset, right[-1].amount + 1))
    encoded = encode_block(make_block("fill", payload, right))
    delta_start = len(encoded) - sum(2 + len(a) + 2 + len(s) + 8 for a, s, _ in right) - 4
    for deltas_bytes in (
        encode_block(make_block("fill", payload, wrong))[delta_start:],
        encoded[delta_start:] + b"\x00",  # trailing byte before the signature
        encoded[delta_start:-1],
        struct.pack(">I", 0),
    ):
        record = resign(encoded[:delta_start] + deltas_bytes)
        assert check_fill_record(record) is None
        assert reference_fill_facts(record) is None
    record = signed_fill_record(payload)
    for broken in (record[:-1], record + b"\x00", bytearray(record), record[:70]):
        assert check_fill_record(broken) is None  # type: ignore[arg-type]


_small_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9:._/@\-]{0,12}", fullmatch=True)


@st.composite
def valid_fill_payloads(draw: st.DrawFn) -> dict:
    """Fills the fast path must accept: numbers within 18 digits, timestamps below 9e18."""
    names = draw(st.lists(_small_names, min_size=3, max_size=3, unique=True))
    amount = draw(st.integers(1, 10**17))
    order_id = st.integers(-(10**17), 10**17) | _small_names
    return fill_payload(
        trade_id=names[0], buyer=f"P-{names[1]}", seller=f"Q-{names[2]}",
        instrument=draw(st.sampled_from(["IPABS-2019-1-A", "A", "Z9"])),
        price=draw(st.integers(1, 10**17)), qty=draw(st.integers(1, 10**17)),
        accrued=draw(st.integers(0, 10**17)), factor=draw(st.integers(1, 1_000_000)),
        settlement_amount=amount,
        buyer_fee=draw(st.integers(-(10**6), 10**6) | st.just(0)),
        seller_fee=draw(st.integers(-(10**6), 10**6) | st.just(0) | st.just(amount)),
        maker_order_id=draw(order_id), taker_order_id=draw(order_id),
        timestamp_ns=draw(st.integers(0, 9 * 10**18 - 1)),
        buyer_segment=draw(st.sampled_from(["interbank", "exchange"])),
        seller_segment=draw(st.sampled_from(["interbank", "exchange"])),
        aggressor=draw(st.sampled_from(["buy", "sell"])),
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(payload=valid_fill_payloads(), data=st.data())
def test_fast_and_reference_fill_paths_agree_on_any_fill_and_any_byte_change(
    payload: dict, data: st.DataObject
) -> None:
    record = signed_fill_record(payload)
    assert assert_fast_path_agrees(record) is not None
    mutated = bytearray(record)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(record) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    assert_fast_path_agrees(bytes(mutated))
    cut = data.draw(st.integers(0, len(record)))
    assert_fast_path_agrees(record[:cut] + data.draw(st.binary(max_size=3)))
