"""A small app that is not the lab's: its one endpoint serves at most SEMAPHORE requests at once.

Each request holds a threading.BoundedSemaphore of size SEMAPHORE (default 4) while it sleeps
SLEEP seconds (default 1), under Gunicorn's thread worker with more threads than that, so the
semaphore, not the worker, is the limit. It has no /pool, so the lab infers the limit from a burst;
and it refuses a parameter it does not take, as many apps do (the lab sends it none):

    cd examples/apps && SEMAPHORE=4 gunicorn -k gthread --threads 32 -b 127.0.0.1:8101 semaphore_app:app
    locust --config profiles/5-users.conf -u 10 -H http://127.0.0.1:8101 --path /work   # from the top

Gunicorn starts in examples/apps: it reads the gunicorn.conf.py of the directory it starts in, and
the checkout's top one is the lab server's.
"""

import os
import threading
import time

from flask import Flask, request

SEMAPHORE = int(os.environ.get("SEMAPHORE", "4"))
SLEEP = float(os.environ.get("SLEEP", "1"))

app = Flask(__name__)
slots = threading.BoundedSemaphore(SEMAPHORE)


@app.get("/work")
def work():
    if request.args:
        return {"error": "bad_parameter", "message": f"/work takes no parameters, got {sorted(request.args)}"}, 400
    with slots:
        time.sleep(SLEEP)
    return {"slept": SLEEP}
