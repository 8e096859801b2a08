"""Application settings from a TOML file, environment variables and flags, validated at start-up.

Precedence, lowest first: built-in defaults, the TOML file, ``SESSIONIZE_<SECTION>_<KEY>``
environment variables, command-line flags. Every value is checked before any input is read, and
every error names the setting, where it came from, and a value that would work.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sessionize.decode.fields import FieldMap
from sessionize.decode.timestamps import make_parser
from sessionize.engine.config import EngineConfig, MetricsConfig, check_time_zone
from sessionize.engine.durations import parse_duration, parse_grace
from sessionize.errors import ConfigError

# Every setting the file may contain, per section: a typo is an error, not a silent default.
SECTIONS: dict[str, set[str]] = {
    "session": {"gap", "grace", "gap_by_type", "max_duration", "split_at_midnight", "dedup",
                "campaign_split", "max_future", "idle_timeout", "seal_retention"},
    "metrics": {"page_view_types", "conversion_types", "path_cap", "engaged_min_duration",
                "engaged_min_page_views"},
    "input": {"format", "key", "ts", "ts_format", "input_tz", "type", "default_type", "event_id",
              "page", "referrer", "campaign", "user_agent", "revenue", "received_at",
              "delimiter", "clf_key", "skip_assets"},
    "store": {"db", "url"},
    "cache": {"url"},
    "kafka": {"bootstrap", "group", "instance_id", "consumer"},
    "output": {"sessions", "rejected", "with_event_ids"},
    "api": {"host", "port"},
}
FORMATS = ("jsonl", "csv", "tsv", "clf")


@dataclass(frozen=True)
class InputSettings:
    format: str | None = None  # None: from the file name
    fields: FieldMap = field(default_factory=FieldMap)
    delimiter: str | None = None
    clf_key: str = "ip+ua"
    skip_assets: bool = True


@dataclass(frozen=True)
class Settings:
    engine: EngineConfig = field(default_factory=EngineConfig)
    input: InputSettings = field(default_factory=InputSettings)
    db: str = "sessionize.db"
    store_url: str | None = None  # postgresql://... (else the SQLite file ``db``)
    cache_url: str | None = None  # redis://...
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_group: str = "sessionize"
    kafka_instance_id: str | None = None  # static membership: a restart keeps its partitions
    kafka_consumer: dict[str, Any] = field(default_factory=dict)  # extra librdkafka settings
    sessions_out: str | None = None
    rejected_out: str | None = None
    with_event_ids: bool = False
    host: str = "127.0.0.1"
    port: int = 8000


def load_settings(config_file: str | Path | None = None, flags: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Defaults <- TOML file <- environment <- flags, then validate everything."""
    raw: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    origins: dict[tuple[str, str], str] = {}  # where each value came from, for errors
    if config_file is None and (env or os.environ).get("SESSIONIZE_CONFIG"):
        config_file = (env or os.environ)["SESSIONIZE_CONFIG"]
    if config_file is not None:
        _merge(raw, _read_toml(Path(config_file)), origin=str(config_file), origins=origins)
    _merge(raw, _from_env(env if env is not None else os.environ), origin="environment",
           origins=origins)
    _merge(raw, {s: {k: v for k, v in vals.items() if v is not None}
                 for s, vals in (flags or {}).items()}, origin="command line", origins=origins)
    try:
        return _build(raw)
    except ConfigError as exc:
        where = _origin_of(str(exc), origins)
        if where is None:
            raise
        raise ConfigError(f"{exc} (set {where})") from None


def _origin_of(message: str, origins: dict[tuple[str, str], str]) -> str | None:
    """Where the setting a message is about was given: in the file, as its ``[section] key``,
    in an environment variable, or on the command line. Messages name a setting as
    ``section.key`` or, for the engine's own checks of ``[session]``, as the bare key."""
    best: tuple[int, str] | None = None
    for (section, key), origin in origins.items():
        for name in (f"{section}.{key}", key if section == "session" else None):
            if not name or not message.startswith(name):
                continue
            rest = message[len(name):len(name) + 1]
            if rest and (rest.isalnum() or rest == "_"):
                continue  # "gap" is not "gap_by_type"
            if best is None or len(name) > best[0]:
                if origin == "environment":
                    label = f"by environment variable SESSIONIZE_{section.upper()}_{key.upper()}"
                elif origin == "command line":
                    label = "on the command line"
                else:
                    label = f"in {origin}, [{section}] {key}"
                best = (len(name), label)
    return None if best is None else best[1]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the --config path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``SESSIONIZE_SESSION_GAP=10m`` -> {"session": {"gap": "10m"}}; values read as TOML when
    they parse as TOML (numbers, booleans, arrays), else as plain strings."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith("SESSIONIZE_") or name == "SESSIONIZE_CONFIG":
            continue
        rest = name[len("SESSIONIZE_"):].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue  # other SESSIONIZE_* variables (tests, services) are not settings
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        out.setdefault(section, {})[rest[len(section) + 1:]] = parsed
    return out


def _merge(raw: dict[str, dict[str, Any]], new: Mapping[str, Any], origin: str,
           origins: dict[tuple[str, str], str]) -> None:
    for section, values in new.items():
        if section not in SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{section}]{_did_you_mean(section, SECTIONS)}"
                              f"; known sections: {', '.join(sorted(SECTIONS))}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{section}] must be a table of settings")
        for key, value in values.items():
            if key not in SECTIONS[section]:
                raise ConfigError(f"{origin}: unknown setting {section}.{key}"
                                  f"{_did_you_mean(key, SECTIONS[section])}; settings of "
                                  f"[{section}]: {', '.join(sorted(SECTIONS[section]))}")
            raw[section][key] = value
            origins[section, key] = origin


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build(raw: dict[str, dict[str, Any]]) -> Settings:
    s, m, i, o = raw["session"], raw["metrics"], raw["input"], raw["output"]
    metrics = MetricsConfig(
        page_view_types=_names(m, "page_view_types", MetricsConfig.page_view_types),
        conversion_types=_names(m, "conversion_types", MetricsConfig.conversion_types),
        path_cap=int(m.get("path_cap", MetricsConfig.path_cap)),
        engaged_min_duration_ms=_duration(m, "engaged_min_duration", "metrics",
                                          MetricsConfig.engaged_min_duration_ms),
        engaged_min_page_views=int(m.get("engaged_min_page_views",
                                          MetricsConfig.engaged_min_page_views)),
    )
    gap_by_type = s.get("gap_by_type")
    if gap_by_type is not None:
        if not isinstance(gap_by_type, Mapping):
            raise ConfigError("session.gap_by_type must be a table such as {browse = \"30m\"}")
        gap_by_type = {str(k): parse_duration(v, name=f"session.gap_by_type.{k}")
                       for k, v in gap_by_type.items()}
    engine = EngineConfig(
        gap_ms=_duration(s, "gap", "session", EngineConfig.gap_ms),
        grace_ms=parse_grace(s["grace"], name="session.grace") if "grace" in s
        else EngineConfig.grace_ms,
        gap_by_type=gap_by_type,
        max_duration_ms=_duration(s, "max_duration", "session", None),
        midnight_tz=s.get("split_at_midnight") or None,
        dedup=_bool(s, "dedup", "session"),
        campaign_split=_bool(s, "campaign_split", "session"),
        max_future_ms=_duration(s, "max_future", "session", None),
        idle_timeout_ms=_duration(s, "idle_timeout", "session", None),
        seal_retention_ms=_duration(s, "seal_retention", "session",
                                    EngineConfig.seal_retention_ms),
        track_event_ids=_bool(o, "with_event_ids", "output"),
        metrics=metrics,
    )
    return Settings(
        engine=engine,
        input=_input_settings(i),
        db=str(raw["store"].get("db", Settings.db)),
        store_url=_url(raw["store"].get("url"), ("postgresql://", "postgres://"), "store.url"),
        cache_url=_url(raw["cache"].get("url"), ("redis://", "rediss://"), "cache.url"),
        kafka_bootstrap=str(raw["kafka"].get("bootstrap", Settings.kafka_bootstrap)),
        kafka_group=str(raw["kafka"].get("group", Settings.kafka_group)),
        kafka_instance_id=raw["kafka"].get("instance_id") or None,
        kafka_consumer=_table(raw["kafka"].get("consumer", {}), "kafka.consumer"),
        sessions_out=o.get("sessions"),
        rejected_out=o.get("rejected"),
        with_event_ids=engine.track_event_ids,
        host=str(raw["api"].get("host", Settings.host)),
        port=_port(raw["api"].get("port", Settings.port)),
    )


def _input_settings(i: dict[str, Any]) -> InputSettings:
    fmt = i.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"input.format {fmt!r} is not known; use one of {', '.join(FORMATS)}")
    base = FieldMap()
    fields = replace(
        base,
        key=_tuple(i.get("key", base.key)),
        ts=_tuple(i.get("ts", base.ts)),
        ts_format=str(i.get("ts_format", base.ts_format)),
        input_tz=str(i.get("input_tz", base.input_tz)),
        campaign=_tuple(i.get("campaign", base.campaign)),
        **{name: _optional(i, name, getattr(base, name))
           for name in ("type", "default_type", "event_id", "page", "referrer", "user_agent",
                        "revenue", "received_at")},
    )
    check_time_zone(fields.input_tz, setting="input.input_tz")
    make_parser(fields.ts_format, fields.input_tz)  # refuses an unknown format now, not later
    clf_key = str(i.get("clf_key", "ip+ua"))
    if clf_key not in ("ip", "ip+ua"):
        raise ConfigError(f"input.clf_key {clf_key!r}: use 'ip' or 'ip+ua'")
    delimiter = i.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ConfigError(f"input.delimiter must be one character, got {delimiter!r}")
    return InputSettings(format=fmt, fields=fields, delimiter=delimiter, clf_key=clf_key,
                         skip_assets=_bool(i, "skip_assets", "input", default=True))


def _duration(section: dict[str, Any], key: str, name: str, default: int | None) -> int | None:
    value = section.get(key)
    return default if value is None else parse_duration(value, name=f"{name}.{key}")


def _bool(section: dict[str, Any], key: str, name: str, default: bool = False) -> bool:
    value = section.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise ConfigError(f"{name}.{key} must be true or false, got {value!r}")


def _names(section: dict[str, Any], key: str, default: frozenset[str]) -> frozenset[str]:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"metrics.{key} must be a list of event types, e.g. [\"purchase\"]")
    return frozenset(value)


def _tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def _optional(section: dict[str, Any], key: str, default: str | None) -> str | None:
    if key not in section:
        return default
    value = section[key]
    return None if value in ("", None, False) else str(value)


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a table, e.g. {{ \"session.timeout.ms\" = 6000 }}")
    return dict(value)


def _url(value: Any, schemes: tuple[str, ...], name: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(schemes):
        raise ConfigError(f"{name} {value!r} must start with {' or '.join(schemes)}, e.g. "
                          f"{schemes[0]}127.0.0.1/...")
    return value


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"api.port must be a number between 1 and 65535, got {value!r}")
    return port
