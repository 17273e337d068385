"""Settings (recsvc.config): defaults, then a TOML file, then environment variables; bad values name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsvc.config import ChannelPolicy, ConfigError, ServerSettings, Settings, TrainingSettings, load_settings


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recsvc.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment() -> None:
    assert load_settings(env={}) == Settings()
    assert TrainingSettings().max_future_hours == 24.0 and TrainingSettings().earliest_event_date == "1990-01-01"


def test_a_file_sets_both_sections_and_channel_policies(tmp_path: Path) -> None:
    path = _toml(tmp_path, """
[training]
event_weights = { view = 1, cart = 3.5, purchase = 10 }
als_factors = 32
recency_half_life_days = 30
evaluate = false
earliest_event_date = "2000-01-01"

[server]
port = 6000
artifact_root = "/srv/art"

[server.policies.store]
name = "in-store"
weights = { repurchase = 2 }
exclude_bought_within_days = 7
""")
    settings = load_settings(path, env={})
    assert settings.training.event_weights == {"view": 1.0, "cart": 3.5, "purchase": 10.0}
    assert settings.training.als_factors == 32 and settings.training.recency_half_life_days == 30.0
    assert settings.training.evaluate is False and settings.training.earliest_event_date == "2000-01-01"
    assert settings.server.port == 6000 and settings.server.artifact_root == "/srv/art"
    assert settings.server.policies == {"store": ChannelPolicy(name="in-store", weights={"repurchase": 2.0},
                                                               exclude_bought_within_days=7)}
    assert settings.server.host == ServerSettings().host  # untouched fields keep their defaults


def test_environment_overrides_the_file_and_is_parsed_by_type(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nport = 6000\n[training]\nals_factors = 32\n")
    env = {"RECSVC_CONFIG": str(path), "RECSVC_SERVER__PORT": "7000", "RECSVC_TRAINING__PROGRESS": "off",
           "RECSVC_TRAINING__MAX_FUTURE_HOURS": " 6.5 ", "RECSVC_TRAINING__EVENT_WEIGHTS": '{"view": 2}',
           "RECSVC_SERVER__VERIFY_CHECKSUMS": "Yes", "OTHER_VAR": "ignored", "RECSVC_NOSECTION": "ignored"}
    settings = load_settings(env=env)  # the file comes from RECSVC_CONFIG
    assert settings.server.port == 7000 and settings.training.als_factors == 32
    assert settings.training.progress is False and settings.server.verify_checksums is True
    assert settings.training.max_future_hours == 6.5 and settings.training.event_weights == {"view": 2.0}


def test_an_explicit_path_wins_over_recsvc_config(tmp_path: Path) -> None:
    chosen = _toml(tmp_path, "[server]\nport = 6001\n")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 6002\n")
    assert load_settings(chosen, env={"RECSVC_CONFIG": str(other)}).server.port == 6001


@pytest.mark.parametrize(("text", "message"), [
    ("[server]\nprot = 1\n", r"unknown setting\(s\) in \[server\]: prot; known: .*port"),
    ("[training]\nals_factors = \"many\"\n", r"training.als_factors: expected int, got 'many'"),
    ("[training]\nevaluate = 1\n", r"training.evaluate: expected bool, got 1"),
    ("[training]\nevent_weights = 3\n", r"training.event_weights: expected a table/object, got 3"),
    ("[server.policies]\nweb = 1\n", r"server.policies.web: expected a table/object, got 1"),
    ("[server.policies.web]\nrepurchase = \"nope\"\n", r"server.policies.web.repurchase: expected true/false"),
    ("[serving]\nport = 1\n",
     r"unknown section \[serving\]; use \[training\], \[server\], \[events\], \[feedback\] or \[experiments\]"),
    ("port = 1\n", r"unknown section \[port\]"),
    ("[server\nport = 1\n", r"is not valid TOML"),
])
def test_a_bad_file_is_refused_naming_the_setting(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_toml(tmp_path, text), env={})


@pytest.mark.parametrize(("env", "message"), [
    ({"RECSVC_SERVER__PORT": "fifty"}, r"server.port: expected int, got 'fifty'"),
    ({"RECSVC_TRAINING__EVALUATE": "maybe"}, r"training.evaluate: expected true/false, got 'maybe'"),
    ({"RECSVC_TRAINING__MAX_FUTURE_HOURS": "soon"}, r"training.max_future_hours: expected float, got 'soon'"),
    ({"RECSVC_TRAINING__EVENT_WEIGHTS": "view=1"}, r"training.event_weights: expected a JSON object"),
    ({"RECSVC_TRAINING__NO_SUCH": "1"}, r"unknown setting\(s\) in \[training\]: no_such"),
    ({"RECSVC_SERVING__PORT": "1"}, r"environment variable RECSVC_SERVING__PORT: unknown section 'serving'"),
])
def test_a_bad_environment_variable_is_refused_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"config file {tmp_path / 'nope.toml'} does not exist"):
        load_settings(env={"RECSVC_CONFIG": str(tmp_path / "nope.toml")})


def test_the_command_line_prints_a_configuration_error_in_one_line(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from recsvc.cli import main

    monkeypatch.setenv("RECSVC_SERVER__PORT", "fifty")
    assert main(["rollback", "--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "recsvc rollback: configuration error: server.port: expected int, got 'fifty'"
