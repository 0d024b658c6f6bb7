"""The users' shared behaviour: wait at the endpoint's gate, send one sleep, rest (in a burst)."""

from locust import FastHttpUser, constant

import contract


class SleepUser(FastHttpUser):
    """A user of one `endpoint`; locustfile.py declares one subclass per endpoint, with its task."""

    abstract = True
    endpoint = None
    # The gates and options of this process, set by lab.plugin's roles where users run.
    gates = None
    options = None
    sent = None  # a Counter of the requests sent per endpoint (lab.plugin.probe.Sent)
    wait_time = constant(0)
    # A burst on a serial mode answers its last request after N x seconds:
    # 100 users x 5 s is 500 s, well past FastHttpUser's default of 60 s.
    network_timeout = 600.0
    # Loopback connects at once, even to a busy sync worker (the kernel's backlog accepts).
    connection_timeout = 10.0

    def sleep_request(self):
        self.gates.wait_turn(self.endpoint)
        self.sent[self.endpoint] += 1
        path = contract.sleep_path(self.endpoint)
        with self.client.get(path, params=self.options.settings.query, name=path, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(contract.failure_message(response.status_code, response.text))
        self.gates.rest()
