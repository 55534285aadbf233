"""Venue configuration: documented defaults, overridden by a TOML file, then the environment,
then command-line flags (each later source wins).

Every setting has an environment variable ``VENUE_<NAME>`` (upper case), e.g.
``VENUE_DATA_DIR=/srv/venue VENUE_PORT=9000 venue serve``; the TOML file (``--config FILE`` or
``VENUE_CONFIG``) uses the same names in lower case at top level. Unknown keys are an error, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
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

    @property
    def session_end_minutes(self) -> int:
        """Minutes after local midnight of ``session_end``."""
        hours, minutes = self.session_end.split(":")
        return int(hours) * 60 + int(minutes)


_FIELDS = {field.name: field for field in dataclasses.fields(Config)}


def _convert(name: str, raw: Any) -> Any:
    """Coerce a file or environment value into the type of setting ``name``."""
    default = _FIELDS[name].default
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            if isinstance(raw, bool):
                raise ValueError(raw)
            value = int(raw)
            if value < 0 or (name == "port" and value > 65535):
                raise ValueError(raw)
            return value
        if isinstance(default, Path):
            return Path(raw)
        value = str(raw)
        if name == "session_end" and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(raw)
        return value
    except ValueError:
        raise ConfigError(f"setting {name!r}: bad value {raw!r}") from None


def load_config(
    file: str | Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build the configuration from defaults, ``file``, ``environ`` and ``overrides`` in turn."""
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
            values[key] = _convert(key, raw)
    for key in _FIELDS:
        env_name = f"VENUE_{key.upper()}"
        if env_name in environ:
            values[key] = _convert(key, environ[env_name])
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _convert(key, raw)
    return Config(**values)
