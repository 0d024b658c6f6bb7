"""The lab's part of a Locust run, as components that each register their own listeners.

locustfile.py calls register(events) once (and so may a locustfile of one's own, with its
BurstUser subclasses: examples/locustfile.py); at init each process builds the components of its
role (lab.plugin.roles): one process runs the users and reports; in Locust's distributed mode
(--processes, --master/--worker) the workers run the users and hand each burst answer to the
master, which orders the burst, writes every file and prints the summary.
"""

from .options import add_arguments
from .roles import role_for
from .users import BurstUser

__all__ = ["BurstUser", "register"]


def register(events):
    """The lab's options on Locust's command line and web UI, and its components at init."""
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(build)


def build(environment, **kwargs):
    """This process's components, for its runner's role."""
    return role_for(type(environment.runner))(environment)
