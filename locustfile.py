"""Locust users for pool-lab: one per endpoint, in a burst or steady.

    locust -f locustfile.py                                   # web UI
    locust --config profiles/5-users.conf -H http://127.0.0.1:8003
    locust --config profiles/5-users.conf -H http://127.0.0.1:8000 --path /items   # any app's paths instead

The lab's logic lives in lab/ (waves, predictions, reports); lab.plugin wires it to Locust.
"""

from locust import events, tag, task

from lab.plugin import BurstUser, register

register(events)


class PythonSleepUser(BurstUser):
    endpoint = "python"

    @tag("python")
    @task
    def sleep_in_python(self):
        self.burst_request()


class PostgresSleepUser(BurstUser):
    endpoint = "postgres"

    @tag("postgres")
    @task
    def sleep_in_postgres(self):
        self.burst_request()
