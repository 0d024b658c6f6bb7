"""The gates, in every process that runs users: in a burst each user waits at its endpoint's gate,
sends its one request when the gate opens, then rests; in a steady run every gate stands open; in a
probe an endpoint's users loop once its gate opens (lab.plugin.probe opens them in turn)."""

from gevent.event import Event
from locust.event import EventHook

# The master's word to its workers: an endpoint's users send now (lab.plugin.burst.DistributedBurst sends it).
OPEN_GATE = "pool-lab:open-gate"


class Gates:
    """The gates of the users of this process, which the burst order opens in the same process."""

    def __init__(self, environment, options):
        self.environment = environment
        self.opened = EventHook()  # (endpoint, users): the endpoint's users of this process send now
        self.reset(options.settings)
        options.run_starting.add_listener(self.reset)

    def reset(self, settings, **kwargs):
        """Close every gate for a burst (at each test start, so the web UI can run burst after burst)."""
        self._gates = {endpoint: Event() for endpoint in settings.endpoints.names}
        self._resting = Event()
        if settings.steady:
            for gate in (*self._gates.values(), self._resting):
                gate.set()
        elif settings.probe:
            # Closed loop: a user sends again as soon as it is answered, once the probe opens its endpoint.
            self._resting.set()

    def open(self, endpoint):
        self._gates[endpoint].set()
        self.opened.fire(endpoint=endpoint, users=self.users(endpoint))

    def users(self, endpoint):
        """This process's users of `endpoint` that send (a class left without tasks by --tags never does)."""
        counts = self.environment.runner.user_classes_count
        return sum(counts.get(cls.__name__, 0) for cls in self.environment.user_classes
                   if getattr(cls, "endpoint", None) == endpoint and cls.tasks)

    def is_open(self, endpoint):
        return self._gates[endpoint].is_set()

    def wait_turn(self, endpoint):
        self._gates[endpoint].wait()

    def rest(self):
        """After its one request of a burst a user idles here until the runner stops it (no second request)."""
        self._resting.wait()


class WorkerGates(Gates):
    """The gates of a worker's users, which the master opens with OPEN_GATE."""

    def __init__(self, environment, options):
        super().__init__(environment, options)
        environment.runner.register_message(OPEN_GATE, lambda msg, **kwargs: self.open(msg.data))
