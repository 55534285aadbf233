"""Venue configuration: documented defaults, overridden by a TOML file, then the environment,
then command-line flags (each later source wins).

Every setting has an environment variable ``VENUE_<NAME>`` (upper case), e.g.
``VENUE_DATA_DIR=/srv/venue VENUE_PORT=9000 venue serve``; the TOML file (``--config FILE`` or
``VENUE_CONFIG``) uses the same names in lower case at top level. Unknown keys, unknown
``VENUE_*`` variables (other than the few in :data:`NOT_SETTINGS`) and values of the wrong form
or out of range are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong form."""


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("./data")
    """Journal, snapshots, ledger and keys live here (created on first start)."""
    host: str = "127.0.0.1"
    port: int = 8080
    session_end: str = "15:30"
    """Local time (China Standard Time, UTC+08:00, no DST) at which DAY orders expire."""
    snapshot_every_commands: int = 10_000
    """A state snapshot is written after this many journaled commands (bounds restart time)."""
    checkpoint_every_blocks: int = 1_000
    checkpoint_every_ms: int = 1_000
    """A signed ledger checkpoint is issued after this many blocks or milliseconds."""
    allow_reference_engine: bool = False
    """Start even if the compiled matching engine is not built (slow pure-Python fallback)."""
    seed_demo: bool = True
    """Seed demo instruments and participants into an empty data directory."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)."""
    api_clock_window_ms: int = 5_000
    """A signed request's VENUE-TIMESTAMP may differ from the venue's clock by this much."""
    api_rate_limit_per_second: int = 100
    api_rate_limit_burst: int = 200
    """Per API key: a token bucket refilled at this rate, holding at most the burst."""
    api_max_body_bytes: int = 65_536
    """Request bodies above this many bytes are refused (validation.body_too_large)."""
    journal_retention: str = "archive"
    """What happens to journal segments wholly before the newest durable snapshot: "archive"
    moves them into DATA_DIR/journal-archive/, "delete" deletes them."""

    def __post_init__(self) -> None:
        # The same checks as for a loaded file or the environment, for a Config built directly.
        for name in _FIELDS:
            problem = _problem(name, getattr(self, name))
            if problem is not None:
                raise ConfigError(f"setting {name!r}: bad value {getattr(self, name)!r}: {problem}")

    @property
    def session_end_minutes(self) -> int:
        """Minutes after local midnight of ``session_end``."""
        hours, minutes = self.session_end.split(":")
        return int(hours) * 60 + int(minutes)


_FIELDS = {field.name: field for field in dataclasses.fields(Config)}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
JOURNAL_RETENTIONS = ("archive", "delete")
# Inclusive ranges of the integer settings (None: no upper bound). checkpoint_every_ms is capped
# at a day: a checkpoint is what receipts are verified against, and the timer must be sane.
_RANGES: dict[str, tuple[int, int | None]] = {
    "port": (1, 65_535),
    "snapshot_every_commands": (1, None),
    "checkpoint_every_blocks": (1, None),
    "checkpoint_every_ms": (1, 86_400_000),
    "api_clock_window_ms": (100, 600_000),
    "api_rate_limit_per_second": (1, 10_000_000),
    "api_rate_limit_burst": (1, 10_000_000),
    "api_max_body_bytes": (1_024, 16 * 1024 * 1024),
}
# ``VENUE_*`` environment variables that are not settings, so not refused: VENUE_CONFIG names the
# configuration file; VENUE_NO_EXTENSIONS and VENUE_ANNOTATE steer the build (setup.py);
# VENUE_LOBSTER_DIR points the test suite at its sample data.
NOT_SETTINGS = frozenset(
    {"VENUE_CONFIG", "VENUE_NO_EXTENSIONS", "VENUE_ANNOTATE", "VENUE_LOBSTER_DIR"}
)


def _problem(name: str, value: Any) -> str | None:
    """Why ``value`` (of the setting's type) is not acceptable for ``name``; None if it is."""
    if name in _RANGES:
        low, high = _RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if value < low or (high is not None and value > high):
            return f"must be at least {low}" if high is None else f"must be from {low} to {high}"
        return None
    if name == "session_end":
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", str(value)):
            return "must be HH:MM, 00:00 to 23:59"
        return None
    if name == "log_level":
        if str(value).upper() not in LOG_LEVELS:
            return "must be one of " + ", ".join(LOG_LEVELS)
        return None
    if name == "journal_retention":
        if value not in JOURNAL_RETENTIONS:
            return "must be one of " + ", ".join(JOURNAL_RETENTIONS)
        return None
    if name == "host":
        return _host_problem(str(value))
    return None


def _host_problem(host: str) -> str | None:
    if not host or host != host.strip() or any(ch.isspace() for ch in host):
        return "must be a host name or an IP address"
    if ":" in host:  # an IPv6 literal, nothing else has colons
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "is not a valid IPv6 address"
        return None
    if all(label.isdigit() for label in host.split(".")):  # looks like IPv4: must be one
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "is not a valid IPv4 address"
    return None


def _convert(name: str, raw: Any, source: str) -> Any:
    """Coerce a file, environment or command-line value into the type of setting ``name`` and
    check it; ``source`` says where it came from, for the error message."""
    default = _FIELDS[name].default
    problem: str | None
    value: Any = None
    if isinstance(default, bool):
        lowered = raw if isinstance(raw, bool) else str(raw).strip().lower()
        if lowered in (True, "1", "true", "yes", "on"):
            value, problem = True, None
        elif lowered in (False, "0", "false", "no", "off"):
            value, problem = False, None
        else:
            problem = "must be true or false"
    elif isinstance(default, int):
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and re.fullmatch(r"\s*[-+]?\d+\s*", raw):
            value = int(raw)
        problem = _problem(name, value) if value is not None else "must be an integer"
    elif not isinstance(raw, str | Path):
        problem = "must be a string"
    elif isinstance(default, Path):
        value = Path(raw)
        problem = "must not be empty" if not str(raw).strip() else None
    else:
        value = str(raw).upper() if name == "log_level" else str(raw)
        problem = _problem(name, value)
    if problem is not None:
        raise ConfigError(f"setting {name!r} ({source}): bad value {raw!r}: {problem}")
    return value


def _check_data_dir(path: Path) -> None:
    """The data directory must be a directory, or not exist yet below one (reads only)."""
    try:
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"setting 'data_dir': {path} exists and is not a directory")
            return
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
    except OSError as exc:
        raise ConfigError(f"setting 'data_dir': cannot inspect {path}: {exc}") from None
    if ancestor.exists() and not ancestor.is_dir():
        raise ConfigError(
            f"setting 'data_dir': {path} cannot be created: {ancestor} is not a directory"
        )


def load_config(
    file: str | Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build the configuration from defaults, ``file``, ``environ`` and ``overrides`` in turn.

    Every value is checked here (type and range, see the README's configuration table), before
    anything touches the disk; an unknown key in the file or an unknown ``VENUE_*`` environment
    variable is refused, never ignored. Raises :class:`ConfigError`.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    file = file or environ.get("VENUE_CONFIG")
    if file:
        try:
            with open(file, "rb") as handle:
                data = tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from None
        for key, raw in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"unknown setting {key!r} in {file}")
            values[key] = _convert(key, raw, f"in {file}")
    settings = {f"VENUE_{key.upper()}": key for key in _FIELDS}
    for env_name in sorted(environ):
        if not env_name.startswith("VENUE_") or env_name in NOT_SETTINGS:
            continue
        if env_name not in settings:
            raise ConfigError(
                f"unknown environment variable {env_name}: not a setting (the settings are "
                + ", ".join(settings)
                + ")"
            )
        values[settings[env_name]] = _convert(settings[env_name], environ[env_name], env_name)
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _convert(key, raw, "command line")
    config = Config(**values)
    _check_data_dir(config.data_dir)
    return config
