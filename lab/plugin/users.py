"""The users' shared behaviour: wait at the endpoint's gate, send one request, rest (in a burst).

BurstUser is what a locustfile subclasses, the lab's own (locustfile.py) or one's own: a `path`
(the endpoint's name too, unless `endpoint` names it), and a task that calls burst_request(),
or none, for one GET of the path. --path makes one such class per path (path_users).
"""

import time

from locust import FastHttpUser, constant

import contract

from ..endpoints import Endpoint, Endpoints
from ..single_attempt import is_connection_lost, send_once

# Every BurstUser class a locustfile declared, in its order (the checks read it before init).
declared = []


class BurstUser(FastHttpUser):
    """A user of one endpoint: `endpoint` (its name in every report) at `path`."""

    abstract = True
    endpoint = None  # default: the path
    path = None  # default: the lab's sleep path of `endpoint`
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
        if self.host:
            # A host typed with a trailing slash (the web UI's too) would make every path //path.
            self.host = self.host.rstrip("/")
        super().__init__(environment)
        if not self.options.settings.steady:
            # A burst or a probe sends each request once (lab.single_attempt says why): a lost request is
            # counted as lost. Steady runs keep Locust's client.
            send_once(self.client)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.path is None and cls.endpoint in contract.ENDPOINTS:
            cls.path = contract.sleep_path(cls.endpoint)
        if cls.endpoint is None:
            cls.endpoint = cls.path
        if cls.path and not cls.tasks and not cls.__dict__.get("abstract"):
            cls.tasks = [BurstUser.burst_request]  # a path alone: one GET of it
        if cls.path and not cls.__dict__.get("abstract"):
            declared.append(cls)

    @classmethod
    def endpoint_of_class(cls):
        return Endpoint(cls.endpoint, cls.path)

    def burst_request(self, method="GET", **kwargs):
        """Wait for this endpoint's turn, send its one request (Locust names it by the path, and `kwargs` go
        to the client: json=, headers=...), then rest until the run stops."""
        self.gates.wait_turn(self.endpoint)
        params = {**self.options.settings.query_for(self.endpoint), **kwargs.pop("params", {})}
        name = self.endpoint_of_class().request_name
        self.sent_count.add(self.endpoint)
        try:
            answer = self.client.request(method, self.path, params=params, name=name, catch_response=True, **kwargs)
        except Exception as error:  # the client would not send it (a URL it refuses): a failure, never a re-run
            self.environment.events.request.fire(request_type=method, name=name, response_time=0, response_length=0,
                                                 response=None, context={}, exception=error, start_time=time.time(),
                                                 url=self.path)
            self.gates.rest()
            return
        with answer as response:
            if not 200 <= response.status_code < 300:  # a 2xx is an answer, whatever the app's
                lost = is_connection_lost(response.request_meta["exception"])
                response.failure(contract.failure_message(response.status_code, response.text, lost))
        self.gates.rest()


def path_users(paths):
    """--path PATH ...: a BurstUser class per path, in its order, so Locust's own even split of -u across
    user classes (in one process, over --processes and over workers given the same --path) splits the
    users across the paths. Named by position: Locust's class names must be identifiers, the same on
    every worker."""
    return [type(f"PathUser{number}", (BurstUser,), {"path": path, "__module__": __name__})
            for number, path in enumerate(paths, start=1)]


def endpoint_classes(user_classes):
    """The run's BurstUser classes of `user_classes`."""
    return [cls for cls in user_classes if isinstance(cls, type) and issubclass(cls, BurstUser) and cls.path]


def declared_endpoints():
    """The endpoints of the BurstUser classes declared so far (the locustfile's, before init)."""
    return Endpoints(tuple(cls.endpoint_of_class() for cls in declared))
