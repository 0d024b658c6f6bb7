"""The users' shared behaviour: wait at the endpoint's gate, send one sleep, rest (in a burst)."""

from locust import FastHttpUser, constant

import contract

from .single_attempt import SingleAttemptClientPool, is_connection_lost


class SleepUser(FastHttpUser):
    """A user of one `endpoint`; locustfile.py declares one subclass per endpoint, with its task."""

    abstract = True
    endpoint = None
    # The gates, options and count of requests sent of this process, set by lab.plugin's roles where users run.
    gates = None
    options = None
    sent_count = None
    wait_time = constant(0)
    # A burst on a serial mode answers its last request after N x seconds:
    # 100 users x 5 s is 500 s, well past FastHttpUser's default of 60 s.
    network_timeout = 600.0
    # Loopback connects at once, even to a busy sync worker (the kernel's backlog accepts).
    connection_timeout = 10.0

    def __init__(self, environment):
        super().__init__(environment)
        if self.options.settings.burst:
            # A burst sends each request once (lab.plugin.single_attempt says why); steady runs keep Locust's client.
            agent = self.client.client
            agent.clientpool = SingleAttemptClientPool(**agent.clientpool.client_args)

    def sleep_request(self):
        self.gates.wait_turn(self.endpoint)
        path = contract.sleep_path(self.endpoint)
        self.sent_count.add(self.endpoint)
        with self.client.get(path, params=self.options.settings.query, name=path, catch_response=True) as response:
            if response.status_code != 200:
                lost = is_connection_lost(response.request_meta["exception"])
                response.failure(contract.failure_message(response.status_code, response.text, lost))
        self.gates.rest()
