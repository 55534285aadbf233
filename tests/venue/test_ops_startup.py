"""`venue serve` start-up failures: each is one clear line with a stable exit status, and a
venue that cannot start leaves no data directory behind.

Exit status: 0 after a clean stop, 1 when the venue cannot start (the address cannot be listened
on, the data directory is refused), 2 for a usage or configuration error.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.venue.test_serve import free_port

ROOT = Path(__file__).resolve().parents[2]


def serve(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "venue.cli", "serve", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_busy_port_fails_before_the_data_directory_is_touched(tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        result = serve("--port", str(port), "--data-dir", str(data_dir))
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr and "venue ready" not in result.stderr
    assert not data_dir.exists()  # not created, not seeded


def test_an_address_this_machine_does_not_have_fails_before_the_data_directory_is_touched(
    tmp_path: Path,
) -> None:
    data_dir, port = tmp_path / "new", free_port()
    result = serve("--host", "192.0.2.1", "--port", str(port), "--data-dir", str(data_dir))
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 192.0.2.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and "venue ready" not in result.stderr
    assert not data_dir.exists()
