"""The Flask app on a real PostgreSQL: init-db, input checking, and what /pool may show."""

import ast
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select, update

from contract import TIMING_FIELDS, sleep_path
from lab.servers import BIN_PATH, ROOT
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


def test_every_sleep_answers_the_contracts_timing_fields(client):
    python = client.get(f"{sleep_path('python')}?seconds=0").json
    postgres = client.get(f"{sleep_path('postgres')}?seconds=0").json
    # The postgres answer times its pool wait, connect and query too; the python one has no database.
    assert set(TIMING_FIELDS) <= set(postgres)
    assert set(TIMING_FIELDS) - set(python) == {"pool_wait", "connect_seconds", "query_seconds"}
    assert postgres["started_at"] <= postgres["finished_at"] and python["pid"] == postgres["pid"] == os.getpid()


@pytest.mark.slow
def test_bad_seconds_on_a_real_worker_leave_it_serving(running_mode):
    server = running_mode("sync")
    status, headers, _ = server.get("/sleep/postgres/?seconds=nan")
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert server.get_json("/sleep/python/?seconds=0")[0] == 200


@pytest.mark.slow
def test_pool_never_shows_the_password(running_mode, database_url):
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    # Embedded and test servers trust local users, so any password connects; it must not show.
    with_password = url.set(password="s3cret-pw").render_as_string(hide_password=False)
    server = running_mode("green", DATABASE_URL=with_password)
    status, pool = server.get_json("/pool")
    assert status == 200
    assert "s3cret-pw" not in str(pool)
    assert server.get_json("/sleep/postgres/?seconds=0")[0] == 200
    assert "s3cret-pw" not in server.log()
    # Loopback only, by default.
    assert f"Listening at: {server.url} " in server.log() and server.url.startswith("http://127.0.0.1:")


NO_DATABASE_URL = ("pool-lab: DATABASE_URL is not set: the app starts no database of its own; set it "
                   "(postgresql://user:password@host:port/dbname), or run the modes with honcho start, whose "
                   "Gunicorn starts the embedded PostgreSQL (the Todo table alone: python -m lab.database init-db)")


def test_without_a_database_url_the_app_starts_nothing_and_says_so_in_one_line(monkeypatch):
    from server import create_app

    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as stopped:
        create_app({"TESTING": True})
    assert str(stopped.value) == NO_DATABASE_URL


@pytest.mark.parametrize("argv", [["flask", "--app", "server", "init-db"],
                                  [sys.executable, "-c", "import server; server.create_app()"]])
def test_without_a_database_url_commands_stop_with_one_line_and_no_database(argv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # Where an embedded start would create its data directory, were one started.
    env.update(PATH=BIN_PATH, EMBEDDED_PGDATA=str(tmp_path / "pgdata"))
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert (result.stdout, result.stderr) == ("", NO_DATABASE_URL + "\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_lab_resets_the_todo_table_on_its_database_and_says_a_failure_in_one_line(database_url):
    env = {**os.environ, "PATH": BIN_PATH, "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "lab.database", "init-db"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"todo table ready: {SEED_ROWS} rows\n", "")
    env["DATABASE_URL"] = "postgresql://lab@127.0.0.1:1/nowhere"
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("pool-lab: could not prepare the todo table: connection to server at "
                                  '"127.0.0.1", port 1 failed') and done.stderr.count("\n") == 1, done.stderr


def imports_within(package):
    """{module: the modules of `package` it imports}, read from the source, function bodies too."""
    root = ROOT / package
    graph = {}
    for path in root.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{package}."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith(f"{package}.")}
        graph[path.stem] = found - {path.stem}
    return graph


def test_the_app_modules_import_one_way_and_only_create_app_imports_the_views():
    graph = imports_within("server")
    assert [module for module, imported in graph.items() if "views" in imported] == ["__init__"]
    # A circle would make some module reach itself.
    for module in graph:
        reached, todo = set(), list(graph[module])
        while todo:
            name = todo.pop()
            if name not in reached:
                reached.add(name)
                todo.extend(graph.get(name, ()))
        assert module not in reached, f"server.{module} imports itself through {sorted(reached)}"

