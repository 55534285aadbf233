"""``venue-audit export-ledger``: a copy of a real venue's ledger that the audit works on alone,
holding no secret (issue 11: a ledger a clerk can take away)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ledger.audit import main, verify_ledger
from ledger.checkpoint import parse_checkpoint
from ledger.keys import load_private_key
from tests.venue.core.helpers import venue_config
from venue.core.commands import PlaceOrder
from venue.service import Venue

SYMBOL = "IPABS-2025-1-A"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def _trade(venue: Venue, rounds: int, tag: str) -> None:
    for n in range(rounds):
        await venue.submit(
            PlaceOrder("P-MM1", f"{tag}s{n}", SYMBOL, "sell", "limit", 1_000_000, 10)
        )
        await venue.submit(
            PlaceOrder("P-BRK1", f"{tag}b{n}", SYMBOL, "buy", "limit", 1_000_000, 10)
        )


def _export_while_running(data_dir: Path, export_dir: Path) -> tuple[int, str]:
    """Trade, export with the venue still running (then trade on), close."""

    async def scenario() -> tuple[int, str]:
        venue = await Venue.open(venue_config(data_dir, checkpoint_every_blocks=3))
        try:
            await _trade(venue, 6, "x")
            await asyncio.to_thread(venue.ledger.issue_checkpoint)  # the 6 fills are covered
            code, out, err = _run("--data-dir", str(data_dir), "--json", "export-ledger",
                                  str(export_dir))  # fmt: skip
            assert code == 0, err
            await _trade(venue, 3, "y")  # blocks the export must not hold
        finally:
            await venue.close()
        return code, out

    return asyncio.run(scenario())


def test_an_export_of_a_running_venue_verifies_and_reports_alone_and_holds_no_secret(
    tmp_path: Path,
) -> None:
    data_dir, export_dir = tmp_path / "data", tmp_path / "clerk" / "ledger-copy"
    _code, out = _export_while_running(data_dir, export_dir)
    exported = json.loads(out)

    # Only blocks, checkpoints and the public key.
    files = sorted(str(path.relative_to(export_dir)) for path in export_dir.rglob("*")
                   if path.is_file())  # fmt: skip
    assert files == exported["files"]
    assert "keys/ledger_ed25519.pub" in files
    assert all(name.startswith(("ledger/blocks/", "ledger/checkpoints/")) and name.endswith(".seg")
               for name in files if name != "keys/ledger_ed25519.pub")  # fmt: skip

    # No secret in any exported file: the signing key (raw and PEM) and every demo HMAC secret.
    key = load_private_key(data_dir / "keys" / "ledger_ed25519.key")
    raw_private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    secrets = [raw_private, (data_dir / "keys" / "ledger_ed25519.key").read_bytes()]
    credentials = json.loads((data_dir / "credentials.json").read_text())["participants"]
    secrets += [entry["secret"].encode() for entry in credentials if entry["secret"]]
    assert len(secrets) > 4
    journal_bytes = b"".join(path.read_bytes() for path in (data_dir / "journal").glob("*.seg"))
    assert all(secret in journal_bytes for secret in secrets[2:])  # the check can see them
    for name in files:
        content = (export_dir / name).read_bytes()
        assert not any(secret in content for secret in secrets), name

    # The export is a consistent ledger: its newest checkpoint covers every block it holds.
    result = verify_ledger(export_dir, workers=1)
    assert result.ok, (result.problem_code, result.problem)
    assert result.blocks == exported["blocks"]
    assert result.public_key_file is not None
    code, out, err = _run("--data-dir", str(data_dir), "--json", "verify")
    assert code == 0, err
    assert json.loads(out)["blocks"] > exported["blocks"]  # the venue went on after the copy

    # report, balances, export, receipt and verify-receipt on the copy alone.
    code, out, err = _run("--data-dir", str(export_dir), "--json", "report")
    assert code == 0, err
    fills = json.loads(out)["total"]["count"]
    assert fills == 6
    code, out, err = _run("--data-dir", str(export_dir), "--json", "balances", "--account", "P-MM1")
    assert code == 0, err
    assert {row["asset"]: row["balance"] for row in json.loads(out)}[SYMBOL] > 0
    code, out, err = _run("--data-dir", str(export_dir), "export", "--format", "jsonl")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == exported["blocks"]
    trade_id = next(line["payload"]["trade_id"] for line in lines if line["kind"] == "fill")
    code, receipt, err = _run("--data-dir", str(export_dir), "receipt", trade_id)
    assert code == 0, err
    (tmp_path / "receipt.json").write_text(receipt)
    code, out, err = _run("verify-receipt", str(tmp_path / "receipt.json"), "--pubkey",
                          str(export_dir / "keys" / "ledger_ed25519.pub"))  # fmt: skip
    assert code == 0, err
    assert parse_checkpoint(json.loads(receipt)["checkpoint"])[0].size == exported["blocks"]


def test_an_export_refuses_a_destination_that_is_not_empty_and_a_ledger_without_a_key(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    async def start_and_stop() -> None:
        venue = await Venue.open(venue_config(data_dir))
        await venue.close()

    asyncio.run(start_and_stop())
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    code, out, err = _run("--data-dir", str(data_dir), "--json", "export-ledger", str(busy))
    assert code == 2 and json.loads(out)["code"] == "audit.usage"
    assert "not an empty directory" in err
    (data_dir / "keys" / "ledger_ed25519.pub").unlink()
    code, _out, err = _run("--data-dir", str(data_dir), "export-ledger", str(tmp_path / "copy"))
    assert code == 2 and "public key file" in err
    assert not (tmp_path / "copy").exists()
