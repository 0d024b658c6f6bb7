"""A small app that is not the lab's: under Gunicorn's gevent worker, its endpoint runs its work in a
gevent.pool.Pool of POOL greenlets (default 6) and waits for it, so at most POOL run at once however
many connections the worker takes; each sleeps SLEEP seconds (default 1). It has no /pool:

    cd examples/apps && POOL=6 gunicorn -k gevent -b 127.0.0.1:8102 gevent_pool_app:app
    locust --config profiles/5-users.conf -u 10 -H http://127.0.0.1:8102 --path /work
"""

import os

import gevent
import gevent.pool
from flask import Flask

POOL = int(os.environ.get("POOL", "6"))
SLEEP = float(os.environ.get("SLEEP", "1"))

app = Flask(__name__)
workers = gevent.pool.Pool(POOL)


@app.get("/work")
def work():
    # spawn waits for a free greenlet of the pool: the requests past POOL queue here.
    workers.spawn(gevent.sleep, SLEEP).get()
    return {"slept": SLEEP}
