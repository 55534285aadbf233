"""The venue-audit command line: every subcommand, --json, exit codes 0/1/2, parallel verify."""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.audit import main, segment_pair, verify_ledger
from ledger.audit.chunks import aligned_subtrees
from ledger.audit.verify import MerkleAccumulator
from ledger.block import decode_signed_block
from ledger.hasher import leaf_hash
from ledger.keys import generate_private_key, public_key_to_text
from ledger.ledger import Ledger
from ledger.proof import merkle_root
from ledger.recordlog import LogScanner, RecordLogCorruptError, frame_record
from tests.ledger.test_tamper import (
    INSTRUMENTS,
    PARTICIPANTS,
    BuiltLedger,
    build_mixed_ledger,
    fill_payload,
)

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltLedger:
    return build_mixed_ledger(tmp_path_factory.mktemp("audit") / "data", fills=120)


def test_verify_ok_text_and_json(built: BuiltLedger) -> None:
    code, out, err = run("--data-dir", str(built.data_dir), "verify")
    assert code == 0 and out.startswith(f"verified {built.block_count} blocks") and err == ""
    code, out, _ = run("verify", "--data-dir", str(built.data_dir), "--json", "--workers", "1")
    summary = json.loads(out)
    assert code == 0 and summary["ok"] is True and summary["blocks"] == built.block_count
    assert summary["first_bad_height"] is None and summary["executor"] == "inline"
    code, out, _ = run(
        "verify", "--data-dir", str(built.data_dir), "--json", "--executor", "process"
    )
    assert code == 0 and json.loads(out)["executor"] in ("process", "inline")


def test_verify_with_pinned_key(built: BuiltLedger, tmp_path: Path) -> None:
    genesis_key = public_key_to_text(built.first_key)
    assert run("verify", "--data-dir", str(built.data_dir), "--pubkey", genesis_key)[0] == 0
    stranger = public_key_to_text(generate_private_key())
    code, _, err = run("verify", "--data-dir", str(built.data_dir), "--pubkey", stranger)
    assert code == 1 and "height 0" in err and "audit.untrusted_key" in err
    key_file = tmp_path / "venue.pub"
    key_file.write_text(genesis_key + "\n")
    assert run("verify", "--data-dir", str(built.data_dir), "--pubkey", str(key_file))[0] == 0


def test_verify_failure_names_height_on_stderr_and_in_json(
    built: BuiltLedger, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(built.data_dir, copy)
    record = list(LogScanner(copy / "ledger" / "blocks"))[33]
    path = Path(record.path)
    data = bytearray(path.read_bytes())
    data[record.offset + 8 + 80] ^= 0x20
    path.write_bytes(bytes(data))
    code, out, err = run("verify", "--data-dir", str(copy))
    assert code == 1 and out == "" and "height 33" in err
    code, out, _ = run("verify", "--data-dir", str(copy), "--json")
    assert code == 1 and json.loads(out)["first_bad_height"] == 33


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_parallel_verify_agrees_with_inline(
    built: BuiltLedger, tmp_path: Path, executor: str
) -> None:
    inline = verify_ledger(built.data_dir, workers=1)
    parallel = verify_ledger(built.data_dir, workers=2, executor=executor)
    assert parallel.ok and inline.ok and parallel.executor == executor
    assert (parallel.root_hash, parallel.blocks, parallel.balances) == (
        inline.root_hash,
        inline.blocks,
        inline.balances,
    )
    copy = tmp_path / "data"
    shutil.copytree(built.data_dir, copy)
    record = list(LogScanner(copy / "ledger" / "blocks"))[70]
    changed = bytearray(record.payload)
    changed[-1] ^= 1  # the signature, with the frame checksum recomputed
    path = Path(record.path)
    data = path.read_bytes()
    path.write_bytes(
        data[: record.offset]
        + frame_record(bytes(changed))
        + data[record.offset + 8 + len(changed) :]
    )
    for chunk in (1024, 16):
        result = verify_ledger(copy, workers=2, executor=executor, chunk_records=chunk)
        assert not result.ok and result.first_bad_height == 70
        assert result.problem_code == "block.bad_signature"
    small = verify_ledger(built.data_dir, workers=2, executor=executor, chunk_records=16)
    assert small.ok and (small.root_hash, small.balances) == (inline.root_hash, inline.balances)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["show", "--from", "-3"],
        ["export"],
        ["export", "--format", "xml"],
        ["verify-receipt", "somefile"],
        ["balances", "--at", "x"],
    ],
)
def test_usage_errors_exit_2(built: BuiltLedger, argv: list[str]) -> None:
    code, _, _ = run("--data-dir", str(built.data_dir), *argv)
    assert code == 2


def test_missing_data_dir_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = run("--data-dir", str(tmp_path / "absent"), "verify")
    assert code == 2 and out == "" and "does not exist" in err
    code, _, err = run("--data-dir", str(tmp_path), "report")
    assert code == 2 and "no ledger" in err


def test_console_entry_point_exit_codes(built: BuiltLedger, tmp_path: Path) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ledger.audit", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert cli("--data-dir", str(tmp_path / "nope"), "verify").returncode == 2
    assert cli("--data-dir", str(built.data_dir), "bogus").returncode == 2
    done = cli("--data-dir", str(built.data_dir), "verify", "--workers", "1")
    assert done.returncode == 0 and done.stderr == ""  # no progress bar without a terminal


def test_show_single_range_and_missing(built: BuiltLedger) -> None:
    code, out, _ = run("show", "5", "--data-dir", str(built.data_dir), "--json")
    assert code == 0
    blocks = [json.loads(line) for line in out.splitlines()]
    assert [b["height"] for b in blocks] == [5]
    code, out, _ = run("show", "--from", "3", "--to", "6", "--data-dir", str(built.data_dir))
    assert code == 0 and [line.split()[0] for line in out.splitlines() if line.startswith("#")] == [
        "#3",
        "#4",
        "#5",
        "#6",
    ]
    assert run("show", "100000", "--data-dir", str(built.data_dir))[0] == 1
    assert run("show", "3", "--from", "1", "--data-dir", str(built.data_dir))[0] == 2


def test_export_jsonl_and_csv(built: BuiltLedger) -> None:
    code, out, _ = run("export", "--format", "jsonl", "--data-dir", str(built.data_dir))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == built.block_count
    assert [line["height"] for line in lines] == list(range(built.block_count))
    code, out, _ = run("export", "--format", "csv", "--data-dir", str(built.data_dir))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == built.block_count
    fills = [row for row in rows if row["kind"] == "fill"]
    assert {json.loads(row["payload"])["trade_id"] for row in fills} == set(built.trade_ids)
    assert rows[7]["block_hash"] == lines[7]["block_hash"]


def test_report_volumes_by_instrument_and_segment_pair(built: BuiltLedger) -> None:
    code, out, _ = run("report", "--json", "--data-dir", str(built.data_dir))
    report = json.loads(out)
    fills = [
        decode_signed_block(r.payload).block.payload
        for r in LogScanner(built.data_dir / "ledger" / "blocks")
        if decode_signed_block(r.payload).block.kind == "fill"
    ]
    assert code == 0 and report["total"]["count"] == len(fills) == len(built.trade_ids)
    assert report["total"]["qty"] == sum(f["qty"] for f in fills)
    assert report["total"]["settlement_amount"] == sum(f["settlement_amount"] for f in fills)
    pairs = report["by_segment_pair"]
    assert sum(row["count"] for row in pairs.values()) == len(fills)
    mixed = [f for f in fills if f["buyer_segment"] != f["seller_segment"]]
    assert pairs["interbank-exchange"]["qty"] == sum(f["qty"] for f in mixed)
    assert set(report["by_instrument"]) <= set(INSTRUMENTS)
    assert sum(row["qty"] for row in report["by_instrument"].values()) == report["total"]["qty"]
    code, text, _ = run("report", "--data-dir", str(built.data_dir))
    assert code == 0 and "interbank-exchange" in text and "total" in text


def test_show_prints_exact_utc_time() -> None:
    from ledger.audit.cli import _format_time

    assert _format_time(1_764_158_400_123_456_789) == "2025-11-26T12:00:00.123456789Z"
    assert _format_time(0) == "1970-01-01T00:00:00.000000000Z"


def test_segment_pair_is_order_free() -> None:
    assert segment_pair("exchange", "interbank") == segment_pair("interbank", "exchange")
    assert segment_pair("exchange", "exchange") == "exchange-exchange"


def test_receipt_and_verify_receipt(built: BuiltLedger, tmp_path: Path) -> None:
    trade_id = built.trade_ids[10]  # settled before the key rotation
    code, out, _ = run("receipt", trade_id, "--data-dir", str(built.data_dir))
    assert code == 0
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(out)
    old, new = public_key_to_text(built.first_key), public_key_to_text(built.second_key)
    data = str(built.data_dir)
    code, out, _ = run(
        "verify-receipt", str(receipt_file), "--pubkey", old, "--pubkey", new, "--data-dir", data
    )
    assert code == 0 and trade_id in out
    # Offline: a participant holding only the receipt and the keys has no data directory.
    code, out, _ = run(
        "verify-receipt", str(receipt_file), "--pubkey", old, "--pubkey", new,
        "--data-dir", str(tmp_path / "no-such-dir"),
    )  # fmt: skip
    assert code == 0 and trade_id in out
    # Signed by the old key, checkpointed under the new one: one key alone is not enough.
    code, out, err = run("verify-receipt", str(receipt_file), "--pubkey", old, "--data-dir", data)
    assert code == 1 and "does not verify" in err
    tampered = json.loads(receipt_file.read_text())
    tampered["leaf_index"] += 1
    receipt_file.write_text(json.dumps(tampered))
    code, out, _ = run(
        "verify-receipt", str(receipt_file), "--pubkey", old, "--pubkey", new, "--json",
        "--data-dir", data,
    )  # fmt: skip
    assert code == 1 and json.loads(out)["ok"] is False
    assert run("receipt", "T-NOPE", "--data-dir", data)[0] == 1


def test_consistency_of_old_checkpoints(built: BuiltLedger, tmp_path: Path) -> None:
    notes = [r.payload.decode() for r in LogScanner(built.data_dir / "ledger" / "checkpoints")]
    assert len(notes) >= 2
    old_file = tmp_path / "old.checkpoint"
    old_file.write_text(notes[0])
    code, out, _ = run("consistency", str(old_file), "--json", "--data-dir", str(built.data_dir))
    result = json.loads(out)
    assert code == 0 and result["consistent"] and result["new_checkpoint"] == notes[-1]
    assert result["old_size"] < result["new_size"] and result["proof"]
    # A checkpoint of a forked history, validly signed by the venue key, is not consistent.
    from ledger.checkpoint import make_checkpoint, parse_checkpoint, sign_checkpoint

    old = parse_checkpoint(notes[0])[0]
    fork = make_checkpoint(old.origin, old.size, bytes(32))
    old_file.write_text(sign_checkpoint(fork, built.first_key))
    code, _, err = run("consistency", str(old_file), "--data-dir", str(built.data_dir))
    assert code == 1 and "NOT consistent" in err
    old_file.write_text(sign_checkpoint(old, generate_private_key()))
    code, _, err = run("consistency", str(old_file), "--data-dir", str(built.data_dir))
    assert code == 1 and "not signed by any venue key" in err


def test_balances_equal_the_ledgers_own_after_a_random_stream(tmp_path: Path) -> None:
    rng = random.Random(99)
    key = generate_private_key()
    ledger = Ledger.open(tmp_path / "data" / "ledger", key, signer="thread")
    names = list(PARTICIPANTS)
    for participant, segment in PARTICIPANTS.items():
        ledger.append(
            "participant_admitted",
            {"participant_id": participant, "segment": segment, "role": "market_maker"},
        )
    snapshot_height, snapshot = None, None
    for step in range(300):
        choice = rng.random()
        account = rng.choice(names)
        asset = rng.choice(["CNY", *INSTRUMENTS])
        try:
            if choice < 0.3:
                source = "external:bank" if asset == "CNY" else "external:issuer"
                amount = rng.randint(1, 10**9 if asset == "CNY" else 500)
                payload = {"account": account, "asset": asset, "amount": amount, "source": source}
                ledger.append("deposit", payload)
            elif choice < 0.4:
                amount = rng.randint(1, 10**6)
                payload = {
                    "account": account, "asset": asset, "amount": amount,
                    "destination": "external:bank",
                }  # fmt: skip
                ledger.append("withdrawal", payload)
            else:
                buyer, seller = rng.sample(names, 2)
                trade = fill_payload(
                    f"R-{step}", rng.choice(INSTRUMENTS), buyer, seller, rng.randint(1, 40)
                )
                ledger.append("fill", trade)
        except Exception as error:  # a refused block (would overdraw): part of a random stream
            assert getattr(error, "code", "").startswith(("block.negative", "ledger.")), error
        if step == 150:
            ledger.flush()
            snapshot_height, snapshot = ledger.height, ledger.balances()
    ledger.flush()
    expected = {key: value for key, value in ledger.balances().items() if value}
    ledger.close()
    data = str(tmp_path / "data")
    code, out, _ = run("balances", "--json", "--data-dir", data)
    got = {(row["account"], row["asset"]): row["balance"] for row in json.loads(out)}
    assert code == 0 and {k: v for k, v in got.items() if v} == expected
    assert len([v for v in expected.values() if v > 0]) > 10
    code, out, _ = run("balances", "--json", "--at", str(snapshot_height), "--data-dir", data)
    at = {(row["account"], row["asset"]): row["balance"] for row in json.loads(out)}
    assert snapshot is not None
    assert {k: v for k, v in at.items() if v} == {k: v for k, v in snapshot.items() if v}
    code, out, _ = run("balances", "--json", "--account", "P-IB1", "--data-dir", data)
    assert code == 0 and {row["account"] for row in json.loads(out)} == {"P-IB1"}
    code, text, _ = run("balances", "--account", "P-IB1", "--data-dir", data)
    cash = expected.get(("P-IB1", "CNY"), 0)
    assert f"{cash // 100}.{cash % 100:02d}" in text
    assert run("balances", "--at", "100000", "--data-dir", data)[0] == 1
    assert verify_ledger(data, workers=1).ok


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    """A clock that moves one second on every reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_progress_goes_to_stderr_only_on_a_terminal(
    built: BuiltLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.audit import cli

    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = cli._Progress(stream, clock=_Clock())
        progress(1234)
        progress.done()
    assert "verifying: 1,234 blocks" in terminal.getvalue()
    assert pipe.getvalue() == ""
    quick = _Terminal()
    progress = cli._Progress(quick, clock=lambda: 0.1)  # a run shorter than SHOW_AFTER_SECONDS
    progress(10)
    progress.done()
    assert quick.getvalue() == ""
    monkeypatch.setattr(cli, "_clock", _Clock())
    out = io.StringIO()
    assert main(["verify", "--data-dir", str(built.data_dir)], stdout=out, stderr=terminal) == 0
    assert out.getvalue().startswith("verified")  # data on stdout, progress on stderr


@pytest.mark.parametrize(
    ("argv", "label"),
    [
        (["report", "--json"], "reading"),
        (["balances", "--json"], "reading"),
        (["export", "--format", "jsonl"], "exporting"),
        (["export", "--format", "csv"], "exporting"),
    ],
)
def test_report_balances_and_export_show_progress_on_a_terminal(
    built: BuiltLedger, monkeypatch: pytest.MonkeyPatch, argv: list[str], label: str
) -> None:
    from ledger.audit import cli, reading

    monkeypatch.setattr(cli, "_clock", _Clock())
    monkeypatch.setattr(reading, "PROGRESS_EVERY", 100)
    terminal, out = _Terminal(), io.StringIO()
    assert main([*argv, "--data-dir", str(built.data_dir)], stdout=out, stderr=terminal) == 0
    assert f"{label}: 100 blocks" in terminal.getvalue()
    assert "blocks (" not in out.getvalue() and out.getvalue()  # the data, untouched
    piped = io.StringIO()
    assert main([*argv, "--data-dir", str(built.data_dir)], stdout=io.StringIO(), stderr=piped) == 0
    assert piped.getvalue() == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "frobnicate"],
        ["show", "--from", "-3", "--json"],
        ["--json", "export"],
        ["export", "--json", "--format", "csv"],
        ["verify-receipt", "somefile", "--json"],
        ["balances", "--at", "x", "--json"],
    ],
)
def test_a_usage_error_with_json_is_json_on_stdout(built: BuiltLedger, argv: list[str]) -> None:
    code, out, err = run("--data-dir", str(built.data_dir), *argv)
    assert code == 2 and err
    answer = json.loads(out)
    assert answer["ok"] is False and answer["code"] == "audit.usage" and answer["problem"]
    code, out, err = run("--data-dir", str(built.data_dir) + "-missing", "--json", "verify")
    assert code == 2 and json.loads(out)["code"] == "audit.usage" and "does not exist" in err


def test_export_refuses_json_with_csv_rather_than_writing_csv(built: BuiltLedger) -> None:
    code, out, err = run("export", "--json", "--format", "csv", "--data-dir", str(built.data_dir))
    assert code == 2 and "height,timestamp_ns" not in out
    assert "--format jsonl" in err and "--format jsonl" in json.loads(out)["problem"]


def test_every_command_has_a_description_and_examples(capsys: pytest.CaptureFixture) -> None:
    from ledger.audit.cli import _COMMANDS

    for command, (_, description, _examples) in _COMMANDS.items():
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert f"usage: venue-audit {command}" in text and "examples:" in text, command
        assert "venue-audit " in text.split("examples:")[1], command
        assert description.split()[0] in text, command
    assert main(["--help"]) == 0
    assert "COMMAND --help" in capsys.readouterr().out


def test_verify_runs_inline_below_the_size_where_workers_pay(
    built: BuiltLedger, tmp_path: Path
) -> None:
    """The measured default (issue 14): a pool for a small ledger is slower than none."""
    import os

    from ledger.audit.verify import PARALLEL_FROM_BYTES, default_workers

    assert verify_ledger(built.data_dir).workers == 1
    assert default_workers(built.data_dir / "ledger") == 1
    big = tmp_path / "ledger" / "blocks"
    big.mkdir(parents=True)
    with open(big / "00000000000000000000.seg", "wb") as segment:
        segment.truncate(PARALLEL_FROM_BYTES)  # sparse: only the size counts
    assert default_workers(tmp_path / "ledger") == (os.cpu_count() or 1)


def test_an_incomplete_last_record_is_a_warning_unless_a_checkpoint_covered_it(
    built: BuiltLedger, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(built.data_dir, copy)
    records = list(LogScanner(copy / "ledger" / "blocks"))
    last = Path(records[-1].path)
    original = last.read_bytes()
    # A write in progress (or a crash): half a frame after the last complete record.
    last.write_bytes(original + frame_record(records[-1].payload)[:40])
    code, out, err = run("verify", "--data-dir", str(copy))
    assert code == 0 and "warning: ignored an incomplete record" in err
    code, out, err = run("balances", "--json", "--data-dir", str(copy))
    assert code == 0 and json.loads(out) and "warning" in err
    # Cut into the last complete record instead: the final checkpoint covered it -> failure.
    last.write_bytes(original[:-10])
    code, _, err = run("verify", "--data-dir", str(copy))
    assert code == 1 and f"height {len(records) - 1}" in err


def test_an_incomplete_last_checkpoint_is_skipped_with_a_warning(
    built: BuiltLedger, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(built.data_dir, copy)
    records = list(LogScanner(copy / "ledger" / "checkpoints"))
    path = Path(records[-1].path)
    path.write_bytes(path.read_bytes() + frame_record(records[-1].payload)[:30])
    result = verify_ledger(copy, workers=1)
    assert result.ok and result.checkpoints == len(records)
    assert any("incomplete checkpoint" in warning for warning in result.warnings)
    code, _, err = run("verify", "--data-dir", str(copy))
    assert code == 0 and "warning: ignored an incomplete checkpoint" in err
    # Damage to an earlier checkpoint record is not a torn tail: a failure.
    data = bytearray(path.read_bytes())
    data[records[0].offset + 12] ^= 1
    path.write_bytes(bytes(data))
    assert run("verify", "--data-dir", str(copy))[0] == 1


@settings(max_examples=80, deadline=None)
@given(pieces=st.lists(st.integers(1, 70), max_size=8))
def test_chunk_subtrees_accumulate_to_the_reference_root(pieces: list[int]) -> None:
    """Chunks of any lengths, as aligned subtrees, give MTH of every prefix (RFC 6962)."""
    leaves = [leaf_hash(number.to_bytes(4, "big")) for number in range(sum(pieces))]
    accumulator = MerkleAccumulator()
    assert accumulator.root() == merkle_root([])
    start = 0
    for length in pieces:
        for level, root in aligned_subtrees(start, leaves[start : start + length]):
            assert accumulator.size % (1 << level) == 0  # aligned where it lands
            accumulator.append_subtree(level, root)
        start += length
        assert (accumulator.size, accumulator.root()) == (start, merkle_root(leaves[:start]))
    one_by_one = MerkleAccumulator()
    for leaf in leaves:
        one_by_one.append(leaf)
    assert one_by_one.root() == accumulator.root()
    if accumulator.size % 2:
        with pytest.raises(ValueError):
            accumulator.append_subtree(1, leaves[0])


def test_verify_says_which_key_it_trusted_and_checks_the_public_key_file(
    built: BuiltLedger, tmp_path: Path
) -> None:
    """Issue 14, item 3: the trust anchor is named, and keys/ledger_ed25519.pub must hold the
    key in force (after the built ledger's rotation: the second key)."""
    from ledger.keys import key_id, save_public_key

    data = str(built.data_dir)
    code, out, _ = run("verify", "--data-dir", data, "--workers", "1")
    genesis = key_id(built.first_key)
    assert code == 0 and f"trusted key {genesis}: the ledger's own genesis block, not pinned" in out
    assert "no public key file to compare" in out
    code, out, _ = run(
        "verify",
        "--data-dir",
        data,
        "--workers",
        "1",
        "--pubkey",
        public_key_to_text(built.first_key),
    )
    assert code == 0 and f"trusted key {genesis}: pinned by --pubkey (key text)" in out
    copy = tmp_path / "data"
    shutil.copytree(built.data_dir, copy)
    public = copy / "keys" / "ledger_ed25519.pub"
    save_public_key(built.second_key, public)
    code, out, _ = run("verify", "--data-dir", str(copy), "--workers", "1", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["public_key_file"] == str(public)
    assert summary["trusted_key_id"] == genesis and "not pinned" in summary["trusted_key_source"]
    save_public_key(built.first_key, public)  # the genesis key: retired by the rotation
    code, out, err = run("verify", "--data-dir", str(copy), "--workers", "1")
    assert code == 1 and out == "" and "audit.public_key_mismatch" in err and str(public) in err


def test_a_changed_byte_in_the_newest_checkpoint_fails_verify_until_the_loss_is_accepted(
    built: BuiltLedger, tmp_path: Path
) -> None:
    """Issue 14, item 2: the newest checkpoint may be in participants' hands; one changed byte
    in it is damage (verify fails, the ledger will not open), not a torn tail to drop."""
    copy = tmp_path / "data"
    shutil.copytree(built.data_dir, copy)
    checkpoints = copy / "ledger" / "checkpoints"
    records = list(LogScanner(checkpoints))
    newest = records[-1]
    path = Path(newest.path)
    data = bytearray(path.read_bytes())
    data[newest.offset + 8 + 3] ^= 0x01  # inside the origin line
    path.write_bytes(bytes(data))
    code, out, err = run("verify", "--data-dir", str(copy), "--json")
    result = json.loads(out)
    assert code == 1 and result["problem_code"] == "audit.bad_checkpoint"
    assert f"record {newest.record_number}" in result["problem"] and str(path) in result["problem"]
    assert "accept-loss" in result["problem"]
    with pytest.raises(RecordLogCorruptError):
        Ledger.open(copy / "ledger", built.second_key, signer="thread")
    assert path.read_bytes() == bytes(data)
    code, out, err = run("accept-loss", str(checkpoints), "--record", "0", "--json")
    assert code == 1 and json.loads(out)["code"] == "audit.failed" and "not 0" in err
    code, out, _ = run("accept-loss", str(checkpoints), "--record", str(newest.record_number))
    assert code == 0 and f"record {newest.record_number}" in out
    code, out, err = run("verify", "--data-dir", str(copy), "--json")
    assert code == 0 and json.loads(out)["checkpoints"] == len(records) - 1
    with Ledger.open(copy / "ledger", built.second_key, signer="thread") as reopened:
        assert reopened.height + 1 == built.block_count
    # Closing issued a checkpoint of every block again, signed afresh.
    assert len(list(LogScanner(checkpoints))) == len(records)
    assert run("verify", "--data-dir", str(copy))[0] == 0
