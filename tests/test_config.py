"""Settings: validated once, precedence CLI > environment > file > defaults, errors name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from monitor.config import ConfigError, Settings, load_settings
from monitor.types import Severity, Verdict

ROOT = Path(__file__).resolve().parent.parent


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _keys(ann, f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


_MAPPINGS = {"headers", "hosts", "severity", "roles", "stale_after_days"}


def _toml_keys(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        if isinstance(value, dict) and key not in _MAPPINGS:
            out |= _toml_keys(value, f"{prefix}{key}.")
        else:
            out.add(prefix + key)
    return out


def test_bundled_config_equals_defaults() -> None:
    """config.toml documents the defaults: loading it yields exactly the built-in settings."""
    assert load_settings(ROOT / "config.toml") == Settings()


def test_bundled_config_documents_every_key() -> None:
    """Every setting appears in config.toml, commented out only where it has no default value."""
    text = (ROOT / "config.toml").read_text()
    present = _toml_keys(tomllib.loads(text))
    commented = {
        k
        for k in _keys(Settings)
        if f"# {k.rsplit('.', 1)[-1]}" in text
        or f"[[{k}]]" in text
        or f"# [{k}." in text  # a mapping's example
    }
    missing = _keys(Settings) - present - commented
    assert not missing, f"undocumented settings: {sorted(missing)}"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    """A misspelt key stops start-up with a message naming the key and the file."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[http]\nconcurency = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "http.concurency" in str(err.value) and str(cfg) in str(err.value)
    assert "unknown key" in str(err.value)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[http]\nper_host_concurrency = 0\n", "http.per_host_concurrency"),
        ("[http]\nconcurrency = 'many'\n", "http.concurrency"),
        ("[alerts]\nalert_after = 0\n", "alerts.alert_after"),
        ("[verdicts.severity]\nbroken = 'fatal'\n", "verdicts.severity.broken"),
        ("[logging]\nformat = 'xml'\n", "logging.format"),
        ("[safety]\nallow_cidrs = ['10.0.0.0/33']\n", "safety.allow_cidrs"),
        ("[[http.remap]]\npattern = '('\nreplacement = 'x'\n", "http.remap.0.pattern"),
        ("[corpus]\namp_cache_template = 'https://{nope}/'\n", "corpus.amp_cache_template"),
        ("[distributed]\nheartbeat_seconds = 10\nstall_seconds = 5\n", "distributed"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str, key: str) -> None:
    """Wrong types and out-of-range values are refused with the offending key in the message."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert key in str(err.value)


def test_invalid_toml_is_one_clear_error(tmp_path: Path) -> None:
    """A file that is not TOML is reported with its path."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[http\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    """Naming a config file that does not exist is an error, not silently the defaults."""
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "absent.toml")


def test_precedence_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI overrides beat MONITOR_* variables, which beat the file, which beats the defaults."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[http]\nconcurrency = 4\nper_host_concurrency = 3\n")
    assert load_settings(cfg).http.concurrency == 4
    monkeypatch.setenv("MONITOR_HTTP__CONCURRENCY", "9")
    monkeypatch.setenv("MONITOR_DATABASE_URL", "sqlite:///env.db")
    s = load_settings(cfg)
    assert (s.http.concurrency, s.http.per_host_concurrency, s.database_url) == (9, 3, "sqlite:///env.db")
    s = load_settings(cfg, {"http.concurrency": 2, "database_url": None})
    assert (s.http.concurrency, s.http.per_host_concurrency, s.database_url) == (2, 3, "sqlite:///env.db")


def test_bad_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An out-of-range environment override is refused like a file value."""
    monkeypatch.setenv("MONITOR_HTTP__CONCURRENCY", "0")
    with pytest.raises(ConfigError, match=r"http\.concurrency"):
        load_settings(None)


def test_partial_severity_table_keeps_other_defaults(tmp_path: Path) -> None:
    """Overriding one verdict's severity leaves the others at their defaults."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[verdicts.severity]\nblocked = 'error'\n")
    sev = load_settings(cfg).verdicts.severity
    assert sev[Verdict.BLOCKED] is Severity.ERROR and sev[Verdict.BROKEN] is Severity.ERROR
    assert sev[Verdict.TIMEOUT] is Severity.WARNING


def test_fingerprint_ignores_secrets(tmp_path: Path) -> None:
    """Changing an auth header does not change the config fingerprint; changing a limit does."""
    a = tmp_path / "a.toml"
    a.write_text('[http]\nheaders = { Authorization = "Bearer one" }\n')
    b = tmp_path / "b.toml"
    b.write_text('[http]\nheaders = { Authorization = "Bearer two" }\n')
    c = tmp_path / "c.toml"
    c.write_text("[http]\nper_host_concurrency = 2\n")
    assert load_settings(a).fingerprint() == load_settings(b).fingerprint() != load_settings(c).fingerprint()
