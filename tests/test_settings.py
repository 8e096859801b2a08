"""Settings: TOML < environment < flags, and every bad value refused at start-up with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionize.errors import ConfigError
from sessionize.settings import load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_defaults():
    s = load_settings(None, None, env={})
    assert (s.engine.gap_ms, s.engine.grace_ms, s.db, s.port) == (1_800_000, 86_400_000,
                                                                  "sessionize.db", 8000)


def test_precedence_file_then_env_then_flags(tmp_path):
    cfg = write(tmp_path, '[session]\ngap = "10m"\ngrace = "1h"\n[store]\ndb = "a.db"\n')
    s = load_settings(cfg, None, env={"SESSIONIZE_SESSION_GAP": "5m"})
    assert (s.engine.gap_ms, s.engine.grace_ms, s.db) == (300_000, 3_600_000, "a.db")
    s = load_settings(cfg, {"session": {"gap": "2m"}}, env={"SESSIONIZE_SESSION_GAP": "5m"})
    assert s.engine.gap_ms == 120_000


def test_optional_rules_and_mapping(tmp_path):
    cfg = write(tmp_path, """
[session]
grace = "unbounded"
split_at_midnight = "Europe/Berlin"
max_duration = "4h"
dedup = true
gap_by_type = { browse = "30m", checkout = "5m", "*" = "20m" }
[metrics]
conversion_types = ["purchase", "signup"]
path_cap = 5
[input]
format = "csv"
key = ["date", "ip"]
ts = "when"
ts_format = "epoch_s"
revenue = "price"
""")
    s = load_settings(cfg, None, env={})
    e = s.engine
    assert e.grace_ms is None and e.midnight_tz == "Europe/Berlin" and e.dedup
    assert e.max_duration_ms == 4 * 3_600_000
    assert e.gap_by_type == {"browse": 1_800_000, "checkout": 300_000, "*": 1_200_000}
    assert e.metrics.conversion_types == {"purchase", "signup"} and e.metrics.path_cap == 5
    f = s.input.fields
    assert (f.key, f.ts, f.ts_format, f.revenue) == (("date", "ip"), ("when",), "epoch_s", "price")


@pytest.mark.parametrize("text,words", [
    ('[session]\ngap = "0s"\n', "gap must be greater than 0"),
    ('[session]\ngap = "ten minutes"\n', "session.gap: cannot read duration"),
    ('[session]\nsplit_at_midnight = "Europe/Berlim"\n', "unknown time zone 'Europe/Berlim'"),
    ('[input]\ninput_tz = "CEST"\n', "unknown time zone"),
    ('[session]\ngapp = "10m"\n', "unknown setting session.gapp"),
    ('[sesion]\ngap = "10m"\n', "unknown section"),
    ('[input]\nts_format = "dd/mm/yyyy"\n', "timestamp format"),
    ('[input]\nformat = "xml"\n', "input.format"),
    ('[session]\ndedup = "maybe"\n', "session.dedup must be true or false"),
    ('[api]\nport = 70000\n', "api.port"),
    ('[session\n', "not valid TOML"),
])
def test_bad_settings_are_refused_with_what_and_how(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(write(tmp_path, text), None, env={})


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", None, env={})


def test_environment_values_are_validated_too():
    with pytest.raises(ConfigError, match="gap must be greater than 0"):
        load_settings(None, None, env={"SESSIONIZE_SESSION_GAP": "0"})


def test_errors_say_where_the_bad_value_was_set(tmp_path):
    """Found trying the README as a new user: the errors did not name their origin."""
    cfg = write(tmp_path, '[session]\ngap = "0s"\n')
    with pytest.raises(ConfigError, match=r"gap must be greater than 0.*\(set in .*s\.toml, "
                                          r"\[session\] gap\)"):
        load_settings(cfg, None, env={})
    with pytest.raises(ConfigError, match=r"unknown time zone 'Europe/Berln' \(did you mean "
                                          r"'Europe/Berlin'.*SESSIONIZE_SESSION_SPLIT_AT_MIDNIGHT"):
        load_settings(None, None, env={"SESSIONIZE_SESSION_SPLIT_AT_MIDNIGHT": "Europe/Berln"})
    with pytest.raises(ConfigError, match=r"input\.input_tz.*\(set on the command line\)"):
        load_settings(None, {"input": {"input_tz": "Mars/Olympus"}}, env={})


def test_a_duration_needs_a_unit(tmp_path):
    with pytest.raises(ConfigError, match=r"'30' has no unit; write e\.g\. '30m' \(minutes\)"):
        load_settings(None, {"session": {"gap": "30"}}, env={})
    with pytest.raises(ConfigError, match="has no unit"):
        load_settings(write(tmp_path, "[session]\ngap = 1800000\n"), None, env={})
    assert load_settings(None, {"session": {"seal_retention": "0"}}, env={}) \
        .engine.seal_retention_ms == 0


def test_a_misspelled_section_or_setting_gets_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[sesion\] \(did you mean 'session'\?\)"):
        load_settings(write(tmp_path, '[sesion]\ngap = "1m"\n'), None, env={})
    with pytest.raises(ConfigError, match=r"unknown setting session\.gapp \(did you mean 'gap'\?\)"):
        load_settings(write(tmp_path, '[session]\ngapp = "1m"\n'), None, env={})


def test_the_cli_prints_setting_names_in_brackets(tmp_path, capsys):
    """The terminal's markup ate "[sesion]" out of the message (found by a new user)."""
    from sessionize.cli import main

    data = tmp_path / "e.jsonl"
    data.write_text('{"user_id": "a", "ts": 0}\n')
    code = main(["run", "-q", "--config", str(write(tmp_path, '[sesion]\ngap = "1m"\n')),
                 "--input", str(data), "--db", str(tmp_path / "x.db")])
    assert code == 2
    assert "unknown section [sesion]" in " ".join(capsys.readouterr().err.split())
