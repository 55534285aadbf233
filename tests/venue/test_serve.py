"""`venue serve` end to end: a real process, real HTTP, real signals, real files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import matching
from tests.venue.core.helpers import venue_config
from venue.config import Config, ConfigError, load_config
from venue.service import Venue, VenueStartupError

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def start_serve(data_dir: Path, port: int, **popen_options) -> subprocess.Popen:
    """``venue serve --data-dir DATA_DIR --port PORT`` from the repository root; its output
    piped as text unless ``popen_options`` say otherwise."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    options.update(popen_options)
    command = ["venue.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    return subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, **options)


def wait_healthy(process: subprocess.Popen, port: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"venue exited early: {process.stderr.read()}")
        try:
            status, body = get_json(f"http://127.0.0.1:{port}/healthz")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            # (the port is bound before the venue opens: a connection can wait until it is up)
            time.sleep(0.1)
            continue
        assert status == 200
        return body
    raise AssertionError("venue did not become healthy in time")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    return process.returncode, stderr


def test_serve_seeds_reports_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    process = start_serve(data_dir, port)
    try:
        health = wait_healthy(process, port)
    finally:
        code, stderr = stop(process)
    assert code == 0, stderr
    assert health["status"] == "ok"
    assert health["engine"] == matching.IMPLEMENTATION
    # counts are counts: 20 seed commands (more once the calendar makes a coupon roll due), one
    # block each after the genesis block, which is height 0
    commands = health["journal_commands"]
    assert commands >= 20 and health["journal_durable_commands"] == health["last_seq"] == commands
    assert health["ledger_blocks"] == health["ledger_durable_blocks"] == commands + 1
    assert health["ledger_newest_height"] == commands
    assert "ledger_height" not in health and "journal_seq" not in health

    # logs are JSON lines and say which engine was loaded
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(r.get("implementation") == matching.IMPLEMENTATION for r in records)
    assert any(r["msg"] == "venue stopped cleanly" for r in records)

    # private files: data dir 0700, signing key and credentials 0600
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data_dir / "keys" / "ledger_ed25519.key").st_mode) == 0o600
    public_key = (data_dir / "keys" / "ledger_ed25519.pub").read_text().strip()
    assert len(public_key) == 64 and int(public_key, 16) >= 0
    credentials = data_dir / "credentials.json"
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    participants = json.loads(credentials.read_text())["participants"]
    roles = sorted(p["role"] for p in participants)
    assert roles == [
        "broker", "broker", "clerk", "market_maker", "market_maker", "operator", "servicer"
    ]  # fmt: skip
    assert {p["segment"] for p in participants if p["role"] not in ("clerk", "servicer")} >= {
        "interbank",
        "exchange",
    }
    assert all(p["key_id"] and len(p["secret"]) >= 32 for p in participants)

    # a restart recovers the same state and does not seed again (SIGINT stops it too)
    process = start_serve(data_dir, port)
    try:
        again = wait_healthy(process, port)
    finally:
        code, stderr = stop(process, signal.SIGINT)
    assert code == 0, stderr
    assert again == health
    # the block count is the one venue-audit verify reports
    audit = subprocess.run(
        [sys.executable, "-m", "ledger.audit", "--data-dir", str(data_dir), "--json", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 0, audit.stderr
    assert json.loads(audit.stdout)["blocks"] == health["ledger_blocks"]
    assert json.loads(credentials.read_text())["participants"] == participants


def test_serve_rejects_bad_configuration_with_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "venue.toml"
    bad.write_text('port = 8080\nsesion_end = "15:00"\n')
    result = subprocess.run(
        [sys.executable, "-m", "venue.cli", "serve", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown setting 'sesion_end'" in result.stderr


def test_config_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "venue.toml"
    file.write_text('port = 9000\nsession_end = "16:00"\ndata_dir = "/srv/venue"\n')
    config = load_config(file, environ={"VENUE_PORT": "9100"}, overrides={"data_dir": "/tmp/x"})
    assert (config.port, config.session_end, str(config.data_dir)) == (9100, "16:00", "/tmp/x")
    assert config.session_end_minutes == 16 * 60
    assert load_config(environ={}) == Config()
    for environ in (
        {"VENUE_PORT": "http"},
        {"VENUE_PORT": "70000"},
        {"VENUE_SESSION_END": "25:00"},
        {"VENUE_ALLOW_REFERENCE_ENGINE": "maybe"},
    ):
        with pytest.raises(ConfigError):
            load_config(environ=environ)


def test_the_reference_engine_is_refused_unless_allowed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(matching, "IMPLEMENTATION", "py")
    with pytest.raises(VenueStartupError, match="--allow-reference-engine"):
        asyncio.run(Venue.open(Config(data_dir=tmp_path / "refused")))
    assert not (tmp_path / "refused").exists()

    async def allowed() -> None:
        venue = await Venue.open(
            Config(data_dir=tmp_path / "allowed", allow_reference_engine=True, seed_demo=False)
        )
        await venue.close()

    asyncio.run(allowed())


def test_serve_refuses_a_busy_port_and_a_corrupt_journal_with_one_clear_line(
    tmp_path: Path,
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    process = start_serve(data_dir, port)
    try:
        wait_healthy(process, port)
        busy = subprocess.run(
            [
                sys.executable,
                "-m",
                "venue.cli",
                "serve",
                "--data-dir",
                str(tmp_path / "other"),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        code, _ = stop(process)
    assert code == 0
    assert busy.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in busy.stderr

    # flip one byte inside an early journal record: corruption before the tail is refused
    segment = sorted((data_dir / "journal").glob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF
    segment.write_bytes(bytes(data))
    before = segment.read_bytes()
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "venue.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "refusing to start" in refused.stderr and str(segment) in refused.stderr
    assert "Traceback" not in refused.stderr
    assert segment.read_bytes() == before  # nothing was "repaired"


def test_an_operator_admits_a_participant_who_can_then_be_funded_and_trade(tmp_path: Path) -> None:
    from venue.core.commands import Deposit, PlaceOrder

    async def scenario() -> None:
        venue = await Venue.open(venue_config(tmp_path / "data"))
        try:
            admitted = await venue.admit("P-NEW1", "Harbour Bank", "interbank", "broker")
            assert admitted["participant_id"] == "P-NEW1" and admitted["segment"] == "interbank"
            assert admitted["scopes"] == ["read", "trade"] and len(admitted["secret"]) >= 32
            assert venue.exchange.credentials[admitted["key_id"]] == ("P-NEW1", admitted["secret"])
            await venue.submit(Deposit("P-NEW1", "CNY", 10_000_000))
            report = await venue.submit(
                PlaceOrder("P-NEW1", "first", "IPABS-2025-1-A", "buy", "limit", 1_000_000, 10)
            )
            assert report["ord_status"] == "new"
            height = venue.ledger.height
            kinds = [venue.ledger.block(h).block.kind for h in range(height - 1, height + 1)]
            assert kinds == ["participant_admitted", "deposit"]
        finally:
            await venue.close()

    asyncio.run(scenario())
