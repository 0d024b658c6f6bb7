"""Gunicorn's settings for the bare app (lab/bare_app.py): the lab's worker and its listen queue, nothing
of the lab's own (no hooks, no database). Passed with -c, so gunicorn.conf.py in the checkout is not read."""

from lab.kernel import somaxconn

wsgi_app = "lab.bare_app:app"
# The lab's worker class and its defaults: one worker, 1000 connections (the lab's WORKER_CONNECTIONS).
worker_class = "gevent"
workers = 1
worker_connections = 1000
# As the lab's modes: several masters run at once, and a burst's connections wait in the full listen queue.
control_socket_disable = True
backlog = somaxconn() or 2048
