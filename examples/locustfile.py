"""A locustfile of one's own, with the lab's burst: every user sends one request at once, and the
summary says how many the endpoint served at once (`inferred: at most K at once, about D s each`).

    pip install /path/to/pool-lab            # or pip install -e . in a checkout
    locust -f locustfile.py --headless -u 12 -H http://127.0.0.1:8101 --csv reports/example

6 users a class, against examples/apps/semaphore_app.py's SEMAPHORE=5: more than it serves at once.

Subclass BurstUser with a path (one GET of it), or with a task of your own that calls burst_request().
"""

from locust import events, task

from lab.plugin import BurstUser, register

register(events)


class Work(BurstUser):
    path = "/work"


class Report(BurstUser):
    """A task of its own: the lab times the one request burst_request() sends (POST, JSON, headers...)."""
    endpoint = "report"  # its name in the summary and files (default: the path)
    path = "/work"

    @task
    def report(self):
        self.burst_request("GET", headers={"Accept": "application/json"})
