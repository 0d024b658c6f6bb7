"""The reference beside the lab: a bare Flask app that sleeps as the lab's python endpoint does and
answers a small JSON, nothing else (no settings, no database, no timings). The benchmark's `bare`
cases run it under the lab's Gunicorn worker class and measure its CPU per request beside the
lab's (lab/bare.py)."""

import time

from flask import Flask, jsonify, request

from contract import sleep_path

app = Flask(__name__)


@app.get(sleep_path("python"))
def sleep_python():
    seconds = float(request.args.get("seconds", 0))
    time.sleep(seconds)  # gevent's, under the gevent worker: as the lab's
    return jsonify(seconds=seconds)
