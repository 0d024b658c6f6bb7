"""The database: the Flask-SQLAlchemy extension, the original's Todo table, and init-db."""

import json
import time

import click
from flask import g, has_request_context
from flask.cli import with_appcontext
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, delete, event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from . import bounds
from .config import sqlalchemy_url
from .errors import database_cause, mark_through_pooler
from .facts import database_facts
from .pool import FairQueuePool

SEED_ROWS = 50
# Any constant key: serializes init-db between the lab's masters starting at once.
INIT_LOCK_KEY = 0x706F6F6C  # "pool"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Todo(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    done: Mapped[bool] = mapped_column(default=False)
    priority: Mapped[int] = mapped_column(default=1)


def init_db(reset=True):
    """Create the todo table and fill it with the seed rows; return the row count.

    With reset=False an existing, non-empty table is left as it is (lab start-up);
    with reset=True it is replaced by exactly the seed rows (the CLI command).
    """
    session = db.session
    # Three masters may start together: without this lock two CREATE TABLEs race.
    session.execute(select(func.pg_advisory_xact_lock(INIT_LOCK_KEY)))
    Base.metadata.create_all(bind=session.connection())
    count = session.scalar(select(func.count()).select_from(Todo))
    if reset or count == 0:
        session.execute(delete(Todo))
        session.add_all(
            Todo(title=f"Todo {n}", done=n % 3 == 0, priority=n % 5 + 1)
            for n in range(1, SEED_ROWS + 1)
        )
        count = SEED_ROWS
    session.commit()
    return count


@click.command("init-db")
@click.option("--if-empty", is_flag=True, help="Leave a table that already has rows as it is.")
@click.option("--facts", is_flag=True, help="Then print what the database says of its ceiling (/db's facts) "
                                            "as one more line, of JSON.")
@with_appcontext
def init_db_command(if_empty, facts):
    """Create the todo table and its seed rows (idempotent)."""
    try:
        count = init_db(reset=not if_empty)
        click.echo(f"todo table ready: {count} rows")
        if facts:
            # Gunicorn's master checks its pools against these; it may not connect itself (see gunicorn.conf.py).
            # The pool's connection closed first, so only this one of ours counts as open.
            db.session.remove()
            db.engine.dispose()
            click.echo(json.dumps(database_facts()))
    except DBAPIError as error:
        # One line that names the cause; Gunicorn's start-up shows it as it is.
        raise click.ClickException(database_cause(error)) from None


def timed_connect(dialect, connection_record, cargs, cparams):
    """Open each new database connection here, to time it: the request's connect_seconds."""
    started = time.perf_counter()
    connection = dialect.connect(*cargs, **cparams)
    if has_request_context():
        g.connect_seconds = g.get("connect_seconds", 0.0) + time.perf_counter() - started
    return connection


def init_app(app):
    config = app.config
    config["DIRECT_DATABASE_URI"] = sqlalchemy_url(config["DATABASE_URL"], config["DRIVER"])
    # Through PgBouncer when asked and there is one (without, the postgres endpoint answers why:
    # views.postgres_sleep); /db's facts always go straight to the database.
    pooler_engine = config["PGBOUNCER"] and config["POOLER_URL"]
    config["SQLALCHEMY_DATABASE_URI"] = (sqlalchemy_url(config["POOLER_URL"], config["DRIVER"]) if pooler_engine
                                         else config["DIRECT_DATABASE_URI"])
    # A connection broken by a database restart is replaced at checkout, not handed to a request.
    options = {"pool_pre_ping": True}
    if pooler_engine and config["DRIVER"] == "psycopg":
        # psycopg 3 prepares a statement by itself once it ran 5 times on a connection; in transaction
        # pooling the next transaction may get another server connection, which lacks it, and
        # PgBouncer 1.18 does not follow prepared statements (1.21 learned to): never prepare.
        options["connect_args"] = {"prepare_threshold": None}
    if config["POOL_CLASS"] == "null":
        # No pool: each request opens a connection of its own and closes it; no limit but the database's.
        options["poolclass"] = NullPool
    else:
        # Flask-SQLAlchemy 3 dropped SQLALCHEMY_POOL_SIZE & co.: all pool settings go here.
        options.update(pool_size=app.config["POOL_SIZE"], max_overflow=app.config["MAX_OVERFLOW"],
                       pool_timeout=app.config["POOL_TIMEOUT"])
        if app.config["POOL_CLASS"] == "fair":
            options["poolclass"] = FairQueuePool
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    with app.app_context():
        bounds.init_app(app, db.engine.dialect.driver)
        bounds.watch(db.engine)
        event.listen(db.engine, "do_connect", timed_connect)
        if pooler_engine:
            event.listen(db.engine, "handle_error", mark_through_pooler)
    app.cli.add_command(init_db_command)
