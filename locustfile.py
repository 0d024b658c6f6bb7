"""Locust users for pool-lab: one per endpoint, in a burst or steady.

    locust -f locustfile.py                                   # web UI
    locust --config profiles/5-users.conf -H http://127.0.0.1:8003

The lab's logic lives in lab/ (waves, predictions, report); lab.locust_plugin wires it to Locust.
"""

from locust import FastHttpUser, constant, events, tag, task

import contract
from contract import SecondsOption
from lab.locust_plugin import LabRun

lab = LabRun()


@events.init_command_line_parser.add_listener
def add_lab_options(parser):
    # On the parser itself, not an argument group: only Locust's add_argument puts them in the web UI.
    parser.add_argument("--behaviour", choices=("steady", "burst"), default="steady",
                        help="burst: every user sends one request at once (python first, then "
                             "postgres) and the run ends when all are answered (in the web UI a burst "
                             "spawns up to 100 users a second, whatever the ramp-up says: no request "
                             "leaves before all are spawned); steady: users loop with no wait, for the charts")
    parser.add_argument("--sleep-seconds", type=SecondsOption("--sleep-seconds"), default="",
                        help="?seconds= sent with every request; empty: the server's SLEEP_SECONDS")
    parser.add_argument("--idle-wait", type=SecondsOption("--idle-wait"), default="10",
                        help="seconds a burst waits for the server's pool to be idle before it runs "
                             "anyway, with a warning")
    parser.add_argument("--calibrate", action="store_true", default=False,
                        help="measure the mode's CPU per request again before the burst, instead of reusing "
                             "the one in calibration.json beside the CSV files")


@events.init.add_listener
def register_lab(environment, **kwargs):
    lab.register(environment)


class SleepUser(FastHttpUser):
    abstract = True
    endpoint = None
    wait_time = constant(0)
    # A burst on a serial mode answers its last request after N x seconds:
    # 100 users x 5 s is 500 s, well past FastHttpUser's default of 60 s.
    network_timeout = 600.0
    # Loopback connects at once, even to a busy sync worker (the kernel's backlog accepts).
    connection_timeout = 10.0

    def sleep_request(self):
        if lab.behaviour == "burst":
            lab.gates.wait_turn(self.endpoint)
        path = f"/sleep/{self.endpoint}/"
        with self.client.get(path, params=lab.query, name=path, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(contract.failure_message(response.status_code, response.text))
        if lab.behaviour == "burst":
            lab.gates.rest()


class PythonSleepUser(SleepUser):
    endpoint = "python"

    @tag("python")
    @task
    def sleep_in_python(self):
        self.sleep_request()


class PostgresSleepUser(SleepUser):
    endpoint = "postgres"

    @tag("postgres")
    @task
    def sleep_in_postgres(self):
        self.sleep_request()
