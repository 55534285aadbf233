"""Servicer disclosures: the tape's tree, the signed report, offline line proofs, and that any
tampering -- a line, a proof, a report field, the key -- is caught."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.hasher import leaf_hash
from ledger.keys import public_key_bytes
from ledger.proof import merkle_root
from venue.domain.disclosures import (
    AssetLine,
    AssetStatus,
    LineProof,
    PoolReport,
    ReportTotals,
    build_report,
    check_tape,
    line_proof,
    sign_report,
    tape_root,
    verify_line,
    verify_report,
)
from venue.errors import ErrorCode, VenueError

SERVICER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SERVICER_HEX = public_key_bytes(SERVICER_KEY).hex()

TAPE = (
    AssetLine("L001", "LIC-7f3a", "CN201910001234", 1_250_000, 1_250_000, 40_000_000, 0,
              "performing"),
    AssetLine("L002", "LIC-09bc", "CN201810004321", 800_000, 0, 12_000_000, 45, "delinquent"),
    AssetLine("L003", "LIC-5e21", "LIC-2019-0042", 600_000, 0, 9_000_000, 120, "defaulted"),
    AssetLine("L004", "LIC-aa10", "CN202010007777", 500_000, 100_000, 7_500_000, 10, "disputed"),
    AssetLine("L005", "LIC-c4d2", "CN201710009999", 300_000, 4_800_000, 0, 0, "prepaid"),
)  # fmt: skip


def signed_report(tape=TAPE) -> PoolReport:
    report = build_report("IPABS-2025-1", 1, date(2026, 11, 1), date(2027, 2, 1), 68_000_000,
                          tape, SERVICER_HEX)  # fmt: skip
    return sign_report(report, SERVICER_KEY)


def test_a_report_states_the_tape_s_root_count_and_totals() -> None:
    report = signed_report()
    assert report.asset_count == 5
    assert report.tape_root == merkle_root([leaf_hash(line.encode()) for line in TAPE])
    assert report.totals == ReportTotals(
        scheduled=3_450_000,
        collected=6_150_000,
        pool_balance=40_000_000 + 12_000_000 + 7_500_000,  # the defaulted line is written off
        defaulted_balance=9_000_000,
        counts=(("performing", 1), ("delinquent", 1), ("defaulted", 1), ("disputed", 1),
                ("prepaid", 1)),
    )  # fmt: skip
    verify_report(report, SERVICER_HEX, TAPE)
    assert PoolReport.from_record(report.to_record()) == report


def test_the_leaf_is_the_line_s_canonical_json() -> None:
    assert TAPE[1].encode() == (
        b'{"asset_id":"L002","balance":12000000,"collected":0,"days_past_due":45,'
        b'"licence_id":"CN201810004321","licensee":"LIC-09bc","scheduled":800000,'
        b'"status":"delinquent"}'
    )
    assert AssetLine.from_record(TAPE[1].to_record()) == TAPE[1]


def test_every_line_proves_offline_against_the_signed_report() -> None:
    report = signed_report()
    for index in range(len(TAPE)):
        proof = LineProof.from_record(line_proof(TAPE, index).to_record())  # via its wire form
        verify_line(report, proof)


@pytest.mark.parametrize(
    "change",
    [{"collected": 1_250_001}, {"status": AssetStatus.DISPUTED}, {"balance": 39_999_999},
     {"licensee": "LIC-7f3b"}],
)  # fmt: skip
def test_a_tampered_line_fails_its_proof_and_the_tape_check(change: dict) -> None:
    report = signed_report()
    proof = line_proof(TAPE, 0)
    forged = dataclasses.replace(proof, line=dataclasses.replace(TAPE[0], **change))
    with pytest.raises(VenueError) as caught:
        verify_line(report, forged)
    assert caught.value.code is ErrorCode.PROOF_MISMATCH
    with pytest.raises(VenueError) as caught:
        verify_report(report, SERVICER_HEX, (forged.line, *TAPE[1:]))
    assert caught.value.code is ErrorCode.BAD_POOL_REPORT


def test_a_proof_moved_to_another_index_or_size_fails() -> None:
    report = signed_report()
    proof = line_proof(TAPE, 2)
    for forged in (
        dataclasses.replace(proof, index=3),
        dataclasses.replace(proof, size=4),
        dataclasses.replace(proof, proof=proof.proof[:-1]),
        dataclasses.replace(proof, proof=(bytes(32), *proof.proof[1:])),
    ):
        with pytest.raises(VenueError) as caught:
            verify_line(report, forged)
        assert caught.value.code is ErrorCode.PROOF_MISMATCH


@pytest.mark.parametrize(
    "change",
    [{"period": 2}, {"pool_balance_start": 68_000_001}, {"asset_count": 5, "tape_root": bytes(32)},
     {"period_end": date(2027, 2, 2)}, {"deal_id": "IPABS-2025-2"}],
)  # fmt: skip
def test_a_tampered_report_fails_the_servicer_signature(change: dict) -> None:
    forged = dataclasses.replace(signed_report(), **change)
    with pytest.raises(VenueError) as caught:
        verify_report(forged, SERVICER_HEX)
    assert caught.value.code is ErrorCode.BAD_REPORT_SIGNATURE


def test_a_report_under_another_key_or_unsigned_is_refused() -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    other_hex = public_key_bytes(other).hex()
    by_other = sign_report(
        dataclasses.replace(signed_report(), servicer_public_key=other_hex, signature=b""), other
    )
    for report in (by_other, dataclasses.replace(signed_report(), signature=b"")):
        with pytest.raises(VenueError) as caught:
            verify_report(report, SERVICER_HEX)
        assert caught.value.code is ErrorCode.BAD_REPORT_SIGNATURE
    with pytest.raises(ValueError, match="servicer key"):
        sign_report(signed_report(), other)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "performing", "days_past_due": 3},
        {"status": "delinquent", "days_past_due": 0},
        {"status": "prepaid", "days_past_due": 0, "balance": 1},
        {"status": "written_off"},
        {"collected": -1},
        {"scheduled": 1.5},
        {"asset_id": "L 001"},
        {"licensee": ""},
    ],
)
def test_a_malformed_line_is_refused(fields: dict) -> None:
    record = {**TAPE[0].to_record(), **fields}
    with pytest.raises(VenueError) as caught:
        AssetLine.from_record(record)
    assert caught.value.code is ErrorCode.BAD_ASSET_LINE


def test_a_tape_is_sorted_unique_and_not_empty() -> None:
    for tape in ((), (TAPE[1], TAPE[0]), (TAPE[0], TAPE[0])):
        with pytest.raises(VenueError) as caught:
            check_tape(tape)
        assert caught.value.code is ErrorCode.BAD_POOL_REPORT


def test_a_report_whose_counts_do_not_add_up_is_refused() -> None:
    record = signed_report().to_record()
    record["asset_count"] = 6
    with pytest.raises(VenueError) as caught:
        PoolReport.from_record(record)
    assert caught.value.code is ErrorCode.BAD_POOL_REPORT


# --------------------------------------------------------------------------- properties

lines = st.builds(
    AssetLine,
    asset_id=st.just("X"),
    licensee=st.from_regex(r"LIC-[0-9a-f]{4}", fullmatch=True),
    licence_id=st.from_regex(r"CN[0-9]{12}", fullmatch=True),
    scheduled=st.integers(0, 10**9),
    collected=st.integers(0, 10**9),
    balance=st.integers(0, 10**10),
    days_past_due=st.just(0),
    status=st.sampled_from([AssetStatus.PERFORMING, AssetStatus.DISPUTED]),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(lines, min_size=1, max_size=40), st.data())
def test_any_line_of_any_tape_proves_and_any_changed_line_does_not(raw, data) -> None:
    tape = tuple(
        dataclasses.replace(line, asset_id=f"A{index:05d}") for index, line in enumerate(raw)
    )
    report = signed_report(tape)
    assert report.tape_root == tape_root(tape)
    index = data.draw(st.integers(0, len(tape) - 1))
    proof = line_proof(tape, index)
    verify_line(report, proof)
    field = data.draw(st.sampled_from(["scheduled", "collected", "balance"]))
    changed = dataclasses.replace(tape[index], **{field: getattr(tape[index], field) + 1})
    with pytest.raises(VenueError):
        verify_line(report, dataclasses.replace(proof, line=changed))
