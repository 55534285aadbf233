"""Configuration is checked whole before anything touches the disk: a bad value, an unknown key
or an unknown ``VENUE_*`` variable is one clear line and exit status 2, never a traceback, and
leaves no data directory behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.venue.test_serve import free_port
from venue.config import NOT_SETTINGS, Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def serve(arguments: list[str], extra_env: dict[str, str] | None = None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VENUE_")}
    environ.update({k: v for k, v in os.environ.items() if k in NOT_SETTINGS})
    environ.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "venue.cli", "serve", "--port", str(free_port()), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,  # a venue that wrongly starts is stopped here, and the test fails
        env=environ,
    )


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('log_level = "LOUD"', "'log_level'"),
        ("checkpoint_every_blocks = 0", "'checkpoint_every_blocks'"),
        ("checkpoint_every_ms = 0", "'checkpoint_every_ms'"),
        ("snapshot_every_commands = 0", "'snapshot_every_commands'"),
        ("snapshot_every_commands = 1.5", "'snapshot_every_commands'"),
        ('host = "999.1.1.1"', "'host'"),
        ("port = 0", "'port'"),
        ("port = 65536", "'port'"),
        ('session_end = "24:00"', "'session_end'"),
        ("seed_demo = 3", "'seed_demo'"),
        ("data_dir = 5", "'data_dir'"),
    ],
)
def test_a_bad_setting_in_the_file_is_a_usage_error_and_touches_nothing(
    tmp_path: Path, toml: str, named: str
) -> None:
    config, data_dir = tmp_path / "venue.toml", tmp_path / "data"
    config.write_text(toml + "\n")
    result = serve(["--config", str(config), "--data-dir", str(data_dir)])
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VENUE_LOG_LEVEL", "LOUD"),
        ("VENUE_CHECKPOINT_EVERY_MS", "0"),
        ("VENUE_SNAPSHOT_EVERY_COMMANDS", "-1"),
        ("VENUE_BOGUS", "1"),
        ("VENUE_DATADIR", "/srv/venue"),  # a typo of VENUE_DATA_DIR
    ],
)
def test_a_bad_or_unknown_environment_variable_is_a_usage_error_and_touches_nothing(
    tmp_path: Path, variable: str, value: str
) -> None:
    data_dir = tmp_path / "data"
    result = serve(["--data-dir", str(data_dir)], {variable: value})
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr and "Traceback" not in result.stderr
    assert not data_dir.exists()


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory\n")
    for data_dir in (a_file, a_file / "below"):
        result = serve(["--data-dir", str(data_dir)])
        assert result.returncode == 2, result.stderr
        assert "cannot listen" not in result.stderr and "Traceback" not in result.stderr
        assert "'data_dir'" in result.stderr and "is not a directory" in result.stderr
    assert a_file.read_text() == "not a directory\n"


def test_the_environment_is_treated_like_the_file(tmp_path: Path) -> None:
    file = tmp_path / "venue.toml"
    file.write_text("bogus = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        load_config(file, environ={})
    with pytest.raises(ConfigError, match="unknown environment variable VENUE_BOGUS"):
        load_config(environ={"VENUE_BOGUS": "1"})
    # the project's own VENUE_* variables that are not settings are left alone
    environ = {name: "1" for name in NOT_SETTINGS if name != "VENUE_CONFIG"}
    assert load_config(environ=environ) == Config()
    assert sorted(NOT_SETTINGS) == [
        "VENUE_ANNOTATE",
        "VENUE_CONFIG",
        "VENUE_LOBSTER_DIR",
        "VENUE_NO_EXTENSIONS",
    ]


def test_every_setting_is_range_checked_with_its_source_named() -> None:
    accepted = load_config(
        environ={
            "VENUE_LOG_LEVEL": "debug",
            "VENUE_PORT": "65535",
            "VENUE_HOST": "::1",
            "VENUE_CHECKPOINT_EVERY_MS": "86400000",
            "VENUE_SNAPSHOT_EVERY_COMMANDS": "1",
            "VENUE_CHECKPOINT_EVERY_BLOCKS": "1",
        }
    )
    assert (accepted.log_level, accepted.port, accepted.host) == ("DEBUG", 65535, "::1")
    for environ in (
        {"VENUE_PORT": "0"},
        {"VENUE_CHECKPOINT_EVERY_MS": "86400001"},
        {"VENUE_CHECKPOINT_EVERY_BLOCKS": "0"},
        {"VENUE_HOST": "::zz"},
        {"VENUE_HOST": "a host"},
        {"VENUE_DATA_DIR": ""},
    ):
        (name,) = environ
        with pytest.raises(ConfigError, match=name):
            load_config(environ=environ)
    with pytest.raises(ConfigError, match="command line"):
        load_config(environ={}, overrides={"port": 70000})
    # a Config built directly is held to the same ranges
    with pytest.raises(ConfigError, match="snapshot_every_commands"):
        Config(snapshot_every_commands=0)
    with pytest.raises(ConfigError, match="log_level"):
        Config(log_level="LOUD")
