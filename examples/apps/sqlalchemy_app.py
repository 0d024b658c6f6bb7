"""A small app of the original's shape that is not the lab's: Flask + Flask-SQLAlchemy on PostgreSQL,
under Gunicorn's gevent worker with psycogreen, so its queries overlap up to its pool's
POOL_SIZE + MAX_OVERFLOW (default 2 + 3 = 5); each query sleeps SLEEP seconds (default 1) in
PostgreSQL. It has no /pool, so the lab infers the limit from a burst:

    cd examples/apps
    DATABASE_URL=postgresql://USER:PASSWORD@127.0.0.1:5432/DB gunicorn -k gevent -b 127.0.0.1:8103 sqlalchemy_app:app
    locust --config profiles/5-users.conf -u 8 -H http://127.0.0.1:8103 --path /report   # from the checkout
"""

import os

from psycogreen.gevent import patch_psycopg

# Before any connection: psycopg2 then waits for PostgreSQL through gevent instead of blocking the worker.
patch_psycopg()

from flask import Flask  # noqa: E402
from flask_sqlalchemy import SQLAlchemy  # noqa: E402
from sqlalchemy import text  # noqa: E402

SLEEP = float(os.environ.get("SLEEP", "1"))

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
# A pool timeout longer than any burst's wait here: the requests past the pool queue, none fails.
app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": int(os.environ.get("POOL_SIZE", "2")),
                                           "max_overflow": int(os.environ.get("MAX_OVERFLOW", "3")),
                                           "pool_timeout": 120}
db = SQLAlchemy(app)


@app.get("/report")
def report():
    db.session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": SLEEP})
    return {"slept": SLEEP}
