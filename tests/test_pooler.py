"""PgBouncer without servers: its settings, the prediction through it, and which failure is its own.

The real pooler's behaviour is tested in test_pgbouncer.py; these are the rules the lab applies.
"""

import pytest

from support import facts
from contract import FAILURE_CAUSES, POOLER_QUERY_WAIT_TIMEOUT, POOLER_REFUSED, POOLER_UNAVAILABLE, failure_cause
from embedded_pg import pgbouncer
from lab.waves import limits, predict
from server.config import ConfigError, embedded_pooler, load
from server.pooler import admin_url, pooler_failure

URL = "postgresql://postgres:@/postgres?host=/var/pgbouncer/pgdata&port=6432"


def bouncer_facts(pool_class="sqlalchemy.pool.impl.NullPool", pool_size=None, max_overflow=None, **pooler):
    """/pool's and /db's facts of the bouncer mode: NullPool through a PgBouncer of these settings."""
    shape = facts("green", pool_class=pool_class)
    if pool_size is None:
        shape.update(pool_size=None, max_overflow=None, pool_limit=None)
    else:
        shape.update(pool_size=pool_size, max_overflow=max_overflow, pool_limit=pool_size + max_overflow)
    return {**shape, "mode": "bouncer", "pgbouncer": True, "db": {
        "max_connections": 30, "open_connections": 2, "accepts": 28, "reserved": 0,
        "pooler": {"pool_mode": "transaction", "default_pool_size": 20, "max_client_conn": 1000,
                   "reserve_pool_size": 0, "reserve_pool_timeout": 5.0, "query_wait_timeout": 120.0,
                   "clients_active": 0, "clients_waiting": 0, "servers_active": 0, "servers_idle": 1, **pooler}}}


def test_the_poolers_settings_default_to_the_issues_and_are_checked():
    settings = load({})
    assert settings["PGBOUNCER"] is False and settings["POOLER_URL"] is None
    assert embedded_pooler(settings) == {"default_pool_size": 20, "max_client_conn": 1000, "reserve_pool_size": 0,
                                         "query_wait_timeout": 120.0}
    assert pgbouncer.Settings(**embedded_pooler(settings)).max_client_conn >= 1000
    for environ, words in [({"PGBOUNCER_DEFAULT_POOL_SIZE": "0"}, "PGBOUNCER_DEFAULT_POOL_SIZE must be at least 1"),
                           ({"PGBOUNCER_MAX_CLIENT_CONN": "lots"}, "PGBOUNCER_MAX_CLIENT_CONN must be a whole number"),
                           ({"PGBOUNCER_RESERVE_POOL_SIZE": "-1"}, "PGBOUNCER_RESERVE_POOL_SIZE must be at least 0"),
                           ({"PGBOUNCER_QUERY_WAIT_TIMEOUT": "soon"}, "PGBOUNCER_QUERY_WAIT_TIMEOUT must be a number"),
                           ({"PGBOUNCER": "maybe"}, "PGBOUNCER must be true or false"),
                           ({"POOLER_URL": "not a url", "DATABASE_URL": "postgresql://u@h/db"},
                            "POOLER_URL is not a valid database URL"),
                           ({"POOLER_URL": URL}, "POOLER_URL is a PgBouncer you run yourself in front of DATABASE_URL")]:
        with pytest.raises(ConfigError, match=words):
            load(environ)


def test_the_poolers_files_live_beside_the_data_directory(tmp_path):
    assert pgbouncer.pooler_directory(tmp_path / "var" / "pgdata") == tmp_path / "var" / "pgbouncer" / "pgdata"
    text = pgbouncer.config_text(tmp_path, tmp_path / "pgdata", 5432, pgbouncer.Settings(20, 1000, 0, 120))
    assert "pool_mode = transaction\n" in text and "max_client_conn = 1000\n" in text
    # A Unix socket only: no TCP address at all.
    assert "listen_addr" not in text and f"unix_socket_dir = {tmp_path}\n" in text


def test_the_poolers_pool_is_a_limit_like_any_other():
    found = limits("postgres", bouncer_facts())
    assert (20, "waves of the pooler's pool: PgBouncer's default_pool_size 20") in found
    prediction = predict("postgres", 100, 1.0, bouncer_facts())
    assert prediction.wave_sizes == (20,) * 5 and prediction.refused == 0 and prediction.ideal_total == 5.0
    # The tighter limit wins: an app pool of 5 + 5 in one worker, through a pooler of 20.
    assert predict("postgres", 30, 1.0, bouncer_facts("sqlalchemy.pool.impl.QueuePool", 5, 5)).wave_sizes == (10,) * 3
    # Not for the python endpoint, which never reaches the database.
    assert predict("python", 100, 1.0, bouncer_facts()).wave_sizes == (100,)


def test_past_max_connections_the_pooler_refuses_nothing_that_its_pool_can_queue():
    # 150 requests against a database that accepts 28: NullPool alone refuses 122, the pooler none.
    prediction = predict("postgres", 150, 1.0, bouncer_facts())
    assert prediction.refused == 0 and prediction.wave_sizes == (20,) * 7 + (10,)
    # A pool larger than what the database accepts is named as a risk.
    assert "expect refusals" in predict("postgres", 150, 1.0, bouncer_facts(default_pool_size=40)).reason


def test_max_client_conn_is_a_ceiling_of_its_own():
    prediction = predict("postgres", 150, 1.0, bouncer_facts(max_client_conn=100, clients_active=1))
    assert (prediction.refused, prediction.refused_as) == (51, POOLER_REFUSED)
    assert prediction.wave_sizes == (51, 20, 20, 20, 20, 19) and prediction.ideal_total == 5.0
    assert "max_client_conn 100 (99 more accepted)" in prediction.reason


def test_query_wait_timeout_bounds_how_long_a_request_may_wait():
    # Waves of 20 of 1 s sleeps: the fourth waits 3 s, past a query_wait_timeout of 2.5 s.
    prediction = predict("postgres", 100, 1.0, bouncer_facts(query_wait_timeout=2.5))
    assert (prediction.wave_sizes, prediction.timed_out, prediction.timed_out_at) == ((20, 20, 20), 40, 2.5)
    assert predict("postgres", 100, 1.0, bouncer_facts(query_wait_timeout=0)).timed_out == 0  # 0: no timeout


def test_a_pooler_that_is_unavailable_is_no_limit():
    shape = bouncer_facts()
    shape["db"]["pooler"] = {"unavailable": "the pgbouncer program is not installed: apt-get install pgbouncer"}
    assert all("pooler" not in why for _, why in limits("postgres", shape))


def test_poolers_words_name_its_failures():
    refused = 'connection to server on socket "/x/.s.PGSQL.6432" failed: FATAL:  no more connections allowed ' \
              '(max_client_conn)'
    assert pooler_failure(refused, URL, None) == POOLER_REFUSED
    assert pooler_failure("query_wait_timeout", URL, None) == POOLER_QUERY_WAIT_TIMEOUT
    missing = 'connection to server on socket "/x/.s.PGSQL.6432" failed: No such file or directory'
    assert pooler_failure(missing, URL, None) == POOLER_UNAVAILABLE
    # The database's own words are the database's.
    assert pooler_failure("FATAL:  sorry, too many clients already", URL, None) is None
    # A closed connection with nobody at the pooler's socket: the pooler is gone.
    assert pooler_failure("server closed the connection unexpectedly", URL, None) == POOLER_UNAVAILABLE


def test_the_poolers_causes_are_counted_by_the_lab():
    for cause in (POOLER_REFUSED, POOLER_QUERY_WAIT_TIMEOUT, POOLER_UNAVAILABLE):
        assert cause in FAILURE_CAUSES and failure_cause("503", f"{cause}: PgBouncer said so") == cause


def test_the_admin_console_is_the_poolers_pgbouncer_database():
    assert admin_url(URL) == "postgresql://postgres:@/pgbouncer?host=%2Fvar%2Fpgbouncer%2Fpgdata&port=6432"
    assert admin_url("postgresql+psycopg2://u:pw@127.0.0.1:6432/app").startswith("postgresql://u:pw@127.0.0.1:6432/pgbouncer")


def test_a_bad_pooler_setting_is_one_line_where_the_lab_starts_its_pooler():
    import embedded_pg
    from lab.database import embedded_pooler as start_embedded_pooler

    with pytest.raises(embedded_pg.StartError, match="^PGBOUNCER_DEFAULT_POOL_SIZE must be at least 1"):
        start_embedded_pooler({"PGBOUNCER_DEFAULT_POOL_SIZE": "0"})


def test_a_pooler_pool_past_what_postgresql_accepts_queues_in_waves_of_what_it_accepts():
    # PostgreSQL accepts 28 more and the pooler holds 1: a pool of 40 gets 29 server connections;
    # PgBouncer keeps the other clients waiting, it does not refuse them.
    prediction = predict("postgres", 150, 1.0, bouncer_facts(default_pool_size=40))
    assert prediction.wave_sizes == (29,) * 5 + (5,) and prediction.refused == 0
    assert "29 server connections" in prediction.reason
