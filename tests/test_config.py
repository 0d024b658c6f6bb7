"""Settings parsing: defaults, and one clear message per mistake."""

import pytest

from server.config import ConfigError, load, sqlalchemy_url
from contract import BadParameter, SecondsOption, sleep_seconds


def test_defaults_match_the_original():
    settings = load({})
    assert (settings["POOL_SIZE"], settings["MAX_OVERFLOW"], settings["POOL_TIMEOUT"]) == (5, 10, 30)
    assert (settings["SLEEP_SECONDS"], settings["MAX_SLEEP_SECONDS"]) == (5.0, 60.0)
    assert settings["DATABASE_URL"] is None and settings["PSYCOGREEN"] is False
    assert (settings["DRIVER"], settings["THREADS"]) == ("psycopg2", 8)
    assert settings["WEB_CONCURRENCY"] == 1  # one worker per mode, as in the original
    assert settings["DB_GRACE_SECONDS"] == 3.0


@pytest.mark.parametrize("environ, words", [
    ({"POOL_SIZE": "five"}, "POOL_SIZE must be a whole number"),
    ({"POOL_SIZE": "0"}, "POOL_SIZE must be at least 1"),
    ({"MAX_OVERFLOW": "-1"}, "MAX_OVERFLOW must be at least 0"),
    ({"POOL_TIMEOUT": "soon"}, "POOL_TIMEOUT must be a whole number"),
    ({"POOL_TIMEOUT": "0.5"}, "POOL_TIMEOUT must be a whole number"),
    ({"POOL_TIMEOUT": "0"}, "POOL_TIMEOUT must be at least 1"),
    ({"MAX_SLEEP_SECONDS": "inf"}, "MAX_SLEEP_SECONDS must be a finite"),
    ({"SLEEP_SECONDS": "90"}, "must not exceed MAX_SLEEP_SECONDS"),
    ({"PSYCOGREEN": "maybe"}, "PSYCOGREEN must be true or false"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a valid database URL"),
    ({"DATABASE_URL": "mysql://u:p@h/db"}, "must be a postgresql:// URL"),
    ({"DRIVER": "asyncpg"}, "DRIVER must be one of psycopg2, psycopg"),
    ({"DRIVER": "psycopg", "PSYCOGREEN": "true"}, "PSYCOGREEN=true patches psycopg2 only, not DRIVER=psycopg"),
    ({"DRIVER": "psycopg", "DATABASE_URL": "postgresql+psycopg2://u@h/db"},
     r"must be a postgresql:// URL for psycopg \(DRIVER\), got postgresql\+psycopg2://"),
    ({"THREADS": "many"}, "THREADS must be a whole number"),
    ({"THREADS": "0"}, "THREADS must be at least 1"),
    ({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY must be a whole number, got 'abc'"),
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY must be at least 1, got 0"),
    ({"DB_GRACE_SECONDS": "soon"}, "^DB_GRACE_SECONDS must be a number, got 'soon'$"),
    ({"DB_GRACE_SECONDS": "0"}, "^DB_GRACE_SECONDS must be more than 0 and at most 10, got '0'$"),
    ({"DB_GRACE_SECONDS": "10.5"}, "^DB_GRACE_SECONDS must be more than 0 and at most 10, got '10.5'$"),
    ({"DB_GRACE_SECONDS": "-1"}, "^DB_GRACE_SECONDS must be at least 0, got '-1'$"),
    ({"DB_GRACE_SECONDS": "inf"}, "^DB_GRACE_SECONDS must be a finite number, got 'inf'$"),
])
def test_bad_settings_raise_one_clear_message(environ, words):
    with pytest.raises(ConfigError, match=words):
        load(environ)


@pytest.mark.parametrize("raw, grace", [("", 3.0), (" 0.5 ", 0.5), ("10", 10.0), ("1e0", 1.0)])
def test_the_database_grace_takes_a_number_above_0_up_to_10(raw, grace):
    assert load({"DB_GRACE_SECONDS": raw})["DB_GRACE_SECONDS"] == grace


def test_a_bad_url_never_echoes_its_password():
    with pytest.raises(ConfigError) as error:
        load({"DATABASE_URL": "postgresql://u:hunter2@h:notaport/db"})
    assert "hunter2" not in str(error.value)


def test_urls_are_pinned_to_the_driver_setting():
    # SQLAlchemy alone would pick psycopg 3 for a bare postgresql://: DRIVER decides instead.
    assert sqlalchemy_url("postgresql://u@h/db", "psycopg2").drivername == "postgresql+psycopg2"
    assert sqlalchemy_url("postgres://u@h/db", "psycopg2").drivername == "postgresql+psycopg2"
    assert sqlalchemy_url("postgresql://u@h/db", "psycopg").drivername == "postgresql+psycopg"
    assert sqlalchemy_url("postgresql+psycopg://u@h/db", "psycopg").drivername == "postgresql+psycopg"


def test_sleep_seconds_parsing():
    assert sleep_seconds([], default=5.0, maximum=60) == 5.0
    assert sleep_seconds([" 0.25 "], default=5.0, maximum=60) == 0.25
    assert sleep_seconds(["60"], default=5.0, maximum=60) == 60
    for values in (["x"], ["-0.1"], ["60.01"], ["nan"], [""], ["1", "1"]):
        with pytest.raises(BadParameter):
            sleep_seconds(values, default=5.0, maximum=60)


def test_a_seconds_option_names_itself_in_its_error():
    assert SecondsOption("--idle-wait")(" 2.5 ") == "2.5"
    assert SecondsOption("--idle-wait")("") == ""
    with pytest.raises(BadParameter, match="^--idle-wait must be a number, got 'abc'$"):
        SecondsOption("--idle-wait")("abc")
