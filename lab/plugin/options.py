"""The lab's options of a Locust run, and their check at every test start."""

import logging
from dataclasses import dataclass

import gevent
from locust.event import EventHook

from contract import BadParameter, SecondsOption

from ..endpoints import Endpoints
from .checks import RunRefused, check_after_parsing, check_web_ui_run, lab_answers, probe_settings
from .users import endpoint_classes, path_users

# burst is the default everywhere (the option, the web UI's form, the profiles): a first START measures waves.
STEADY, BURST, PROBE = BEHAVIOURS = ("steady", "burst", "probe")
SLEEP_SECONDS = SecondsOption("--sleep-seconds")
IDLE_WAIT = SecondsOption("--idle-wait")

log = logging.getLogger("pool-lab")


def add_arguments(parser, **kwargs):
    """An init_command_line_parser listener: the lab's options, which the web UI's form shows too, and
    the checks of a headless run once the command line is parsed."""
    check_after_parsing(parser)
    # On the parser itself, not an argument group: only Locust's add_argument puts them in the web UI.
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="burst",
                        help="burst: every user sends one request at once (python first, then "
                             "postgres) and the run ends when all are answered (in the web UI a burst "
                             "spawns up to 100 users a second, whatever the ramp-up says: no request "
                             "leaves before all are spawned); steady: users loop with no wait, for the charts; "
                             "probe: closed-loop users in steps (--probe-steps), one endpoint after the other, "
                             "and the limit inferred from their throughput (docs/probe.md)")
    # No argparse type for the seconds: its error would be a usage and an error line; the checks
    # (lab.plugin.checks, and Settings.read at each start) say it in one pool-lab line.
    parser.add_argument("--sleep-seconds", default="",
                        help="?seconds= sent with every request; empty: the server's SLEEP_SECONDS")
    parser.add_argument("--idle-wait", default="10",
                        help="seconds a burst waits for the server's pool to be idle before it runs "
                             "anyway, with a warning")
    parser.add_argument("--probe-steps", default="",
                        help="a probe's numbers of users per endpoint, such as 1,2,4,8; empty: doubling from 1 "
                             "up to -u, and -u itself last")
    parser.add_argument("--step-seconds", default="",
                        help="how long a probe measures each step once its users are all up; empty: long "
                             "enough for a few answers per user, max(2 s, 4 x the sleep)")
    parser.add_argument("--calibrate", action="store_true", default=False,
                        help="measure the mode's CPU per request again before the burst, instead of reusing "
                             "the one in calibration.json beside the CSV files")
    parser.add_argument("--calibration-file", default="", env_var="LOCUST_CALIBRATION_FILE",
                        help="the file the CPU calibration is kept in and reused from, for every --csv prefix; "
                             "empty: calibration.json beside the CSV files")
    # Command line only: the users of each path are a class of their own, made once at init.
    parser.add_argument("--path", action="append", default=[], include_in_web_ui=False,
                        help="burst this path of the -H host instead of the lab's two sleep endpoints; repeat it "
                             "for several, in burst order (each path its endpoint's name; -u is split evenly "
                             "across them); ?seconds= goes only to the lab's own server (its /pool answered)")
    parser.add_argument("--ignore-facts", action="store_true", default=False,
                        help="ignore the server's /pool: no prediction, the waves grouped and the limit inferred "
                             "from the answers alone, as for a server that is not the lab's")


@dataclass(frozen=True)
class Settings:
    """One run's lab options, checked."""
    behaviour: str = "burst"  # what the lab measures; a steady run is for Locust's charts
    sleep_seconds: str = ""  # as given; empty: the server's default
    idle_wait: float = 0.0
    calibrate: bool = False
    calibration_file: str = ""  # empty: calibration.json beside the CSV files
    endpoints: Endpoints = Endpoints()  # the run's endpoints, in burst order
    ignore_facts: bool = False  # --ignore-facts: measure as if /pool did not answer
    lab_server: bool = True  # the server is the lab's (its /pool answered): it takes ?seconds=
    probe_steps: tuple = ()  # empty: lab.probe.default_steps of -u
    step_seconds: float | None = None  # None: lab.probe.default_step_seconds of the sleep

    @property
    def burst(self):
        return self.behaviour == BURST

    @property
    def steady(self):
        return self.behaviour == STEADY

    @property
    def probe(self):
        return self.behaviour == PROBE

    def query_for(self, endpoint):
        """The query string of `endpoint`'s requests: ?seconds= to the lab's sleep endpoints on the lab's
        server only (another app may refuse a parameter it does not know), else none."""
        found = self.endpoints.named(endpoint)
        if self.sleep_seconds and self.lab_server and found and found.lab:
            return {"seconds": self.sleep_seconds}
        return {}

    @classmethod
    def read(cls, options, endpoints=Endpoints(), lab_server=True):
        """The run's settings from Locust's parsed options; BadParameter names the option it refuses."""
        # Checked again: the web UI's form sets options as typed, past the option's type.
        return cls(behaviour=options.behaviour, sleep_seconds=SLEEP_SECONDS(options.sleep_seconds),
                   idle_wait=float(IDLE_WAIT(options.idle_wait) or 0),
                   calibrate=options.calibrate, calibration_file=getattr(options, "calibration_file", ""),
                   endpoints=endpoints,
                   ignore_facts=bool(getattr(options, "ignore_facts", False)), lab_server=lab_server,
                   **probe_settings(options))


def run_endpoints(environment):
    """The run's endpoints, once at init: with --path, a user class per path in place of the locustfile's
    BurstUser classes (its other users stay); in the order the locustfile (or --path) gives them."""
    paths = getattr(environment.parsed_options, "path", None) or []
    if paths:
        made = path_users(paths)
        replaced = endpoint_classes(environment.user_classes)
        environment.user_classes[:] = [c for c in environment.user_classes if c not in replaced] + made
        if environment.available_user_classes is not None:
            for cls in endpoint_classes(environment.available_user_classes.values()):
                del environment.available_user_classes[cls.__name__]
            environment.available_user_classes.update((cls.__name__, cls) for cls in made)
    declared = list((environment.available_user_classes or {}).values())
    classes = sorted(endpoint_classes(environment.user_classes),
                     key=lambda c: declared.index(c) if c in declared else len(declared))
    found = {}
    for cls in classes:
        found.setdefault(cls.endpoint, cls.endpoint_of_class())
    return Endpoints(tuple(found.values()))


class Options:
    """Reads the options at every test start; a run whose options pass starts every other component
    (run_starting, in the order they registered), one that does not quits with a pool-lab line."""

    def __init__(self, environment):
        self.endpoints = run_endpoints(environment)
        self.settings = Settings(endpoints=self.endpoints)
        self.run_starting = EventHook()  # (settings): a run with these settings begins
        environment.events.test_start.add_listener(self.on_test_start)

    def on_test_start(self, environment, **kwargs):
        try:
            self.settings = Settings.read(environment.parsed_options, self.endpoints, self.lab_server(environment))
        except BadParameter as error:
            log.error("%s", error)
            environment.runner.quit()
            return
        if environment.web_ui:
            # What a headless run checks before it starts, the web UI checks at START: nothing is sent.
            try:
                check_web_ui_run(environment.host, self.settings)
            except RunRefused as refused:
                log.error("%s", refused)
                # Stopped, not quit: the page stays, and NEW can start a run with the host fixed.
                gevent.spawn(environment.runner.stop)
                return
        self.run_starting.fire(settings=self.settings)

    def lab_server(self, environment):
        """Whether the server takes ?seconds=: the lab's endpoints alone need its /pool (the checks saw it
        answer); other endpoints ask it only where a path is one of the lab's sleep endpoints."""
        if self.endpoints.lab_only:
            return True
        return any(e.lab for e in self.endpoints.items) and lab_answers(environment.host)
