"""The Flask app on a real PostgreSQL: init-db, input checking, and what /pool may show."""

import pytest
from sqlalchemy import func, select, update

from server.db import SEED_ROWS, Todo, db


def todo_count():
    return db.session.scalar(select(func.count()).select_from(Todo))


def test_init_db_twice_leaves_the_seed_rows(app):
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert f"{SEED_ROWS} rows" in result.output
    with app.app_context():
        assert todo_count() == SEED_ROWS
        assert db.session.scalar(select(func.count(func.distinct(Todo.title)))) == SEED_ROWS


def test_init_db_resets_but_if_empty_keeps_rows(app):
    runner = app.test_cli_runner()
    with app.app_context():
        db.session.execute(update(Todo).values(done=True))
        db.session.commit()
    assert runner.invoke(args=["init-db", "--if-empty"]).exit_code == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(Todo.done)) == SEED_ROWS
    assert runner.invoke(args=["init-db"]).exit_code == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(Todo.done)) < SEED_ROWS


@pytest.mark.parametrize("query, words", [
    ("seconds=abc", "must be a number"),
    ("seconds=-1", "between 0 and 60"),
    ("seconds=nan", "finite"),
    ("seconds=inf", "finite"),
    ("seconds=-inf", "finite"),
    ("seconds=1e309", "finite"),
    ("seconds=60.5", "between 0 and 60"),
    ("seconds=", "empty"),
    ("seconds=1&seconds=2", "2 times"),
    ("seconds=" + "1" * 40, "characters long"),
    # float() takes these; a person typing seconds does not mean them.
    ("seconds=1_0", "must be a number"),
    ("seconds=1_000", "must be a number"),
    ("seconds=%D9%A1", "must be a number"),  # an Arabic-Indic one
    ("Seconds=0.1", "unknown parameter 'Seconds'"),
    ("seconds=0.1&secs=2", "unknown parameter 'secs'"),
])
@pytest.mark.parametrize("endpoint", ["python", "postgres"])
def test_bad_seconds_get_a_400_that_names_the_problem(client, endpoint, query, words):
    response = client.get(f"/sleep/{endpoint}/?{query}")
    assert response.status_code == 400
    assert response.json["error"] == "bad_parameter"
    assert words in response.json["message"]


def test_seconds_default_and_bounds_are_accepted(app, client):
    app.config["SLEEP_SECONDS"] = 0.01
    assert client.get("/sleep/python/").json["seconds"] == 0.01
    assert client.get("/sleep/python/?seconds=0").json["seconds"] == 0
    assert str(client.get("/sleep/python/?seconds=-0").json["seconds"]) == "0.0"
    # With or without the trailing slash, the same JSON: no HTML redirect.
    assert client.get("/sleep/python?seconds=0").json["seconds"] == 0
    assert client.get("/pool/").json["pool_limit"] == 15
    assert client.get("/sleep/postgres/?seconds=0").json["todo_count"] == SEED_ROWS


def test_bad_seconds_on_a_real_worker_leave_it_serving(lab):
    server = lab("sync")
    status, headers, _ = server.get("/sleep/postgres/?seconds=nan")
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert server.get_json("/sleep/python/?seconds=0")[0] == 200


def test_pool_never_shows_the_password(lab, database_url):
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    # Embedded and test servers trust local users, so any password connects; it must not show.
    with_password = url.set(password="s3cret-pw").render_as_string(hide_password=False)
    server = lab("green", DATABASE_URL=with_password)
    status, pool = server.get_json("/pool")
    assert status == 200
    assert "s3cret-pw" not in str(pool)
    assert server.get_json("/sleep/postgres/?seconds=0")[0] == 200
    assert "s3cret-pw" not in server.log()
    # Loopback only, by default.
    assert f"Listening at: {server.url} " in server.log() and server.url.startswith("http://127.0.0.1:")
