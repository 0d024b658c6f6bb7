"""Locust users for pool-lab: one per endpoint, in a burst or steady.

    locust -f locustfile.py                                   # web UI
    locust --config profiles/5-users.conf -H http://127.0.0.1:8003

The lab's logic lives in lab/ (waves, predictions, report); this file wires it to Locust.
"""

from locust import FastHttpUser, constant, events, tag, task

from lab import locust_hooks


@events.init_command_line_parser.add_listener
def add_lab_options(parser):
    locust_hooks.add_options(parser)


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
        lab = locust_hooks.state
        if lab.behaviour == "burst":
            lab.burst.wait_turn(self.endpoint)
        path = f"/sleep/{self.endpoint}/"
        with self.client.get(path, params=lab.query, name=path, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(locust_hooks.failure_message(response))
        if lab.behaviour == "burst":
            lab.burst.answered(self.endpoint)
            lab.burst.rest()


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


@events.init.add_listener
def start_request_log(environment, **kwargs):
    locust_hooks.on_init(environment)


@events.request.add_listener
def keep_server_timing(name, start_time, response_time, response, exception, **kwargs):
    locust_hooks.on_request(name, start_time, response_time, response, exception)


@events.test_start.add_listener
def read_options_and_pool(environment, **kwargs):
    locust_hooks.on_test_start(environment)


@events.spawning_complete.add_listener
def open_the_burst(user_count, **kwargs):
    locust_hooks.on_spawning_complete()


@events.test_stop.add_listener
def report_waves(environment, **kwargs):
    locust_hooks.on_test_stop(environment)
