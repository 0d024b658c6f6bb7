"""The run's endpoints: what a burst sends to, in its order, each a name (in every report, CSV,
result file and Waves tab) and a path.

The lab's locustfile declares the lab's own two (contract.ENDPOINTS at their sleep paths);
`--path PATH` (repeatable) replaces them with one endpoint per path, named by the path itself;
a locustfile of one's own declares its own (lab.plugin.BurstUser subclasses with a path). The
run's checked options hold the one list (lab.plugin.options.Settings.endpoints) that the
burst's order, its gates, answers, summaries and renders read.
"""

from dataclasses import dataclass

import contract


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str

    @property
    def lab(self):
        """The lab's endpoint served at this path ('python', 'postgres'), or None: what /pool's facts predict."""
        return next((e for e in contract.ENDPOINTS if contract.sleep_path(e) == self.path), None)

    @property
    def request_name(self):
        """What Locust reports its requests by (its statistics, CSV, request log): the path, or the name
        a locustfile gave the endpoint, which tells two endpoints of one path apart."""
        return self.path if self.name in (self.path, self.lab) else self.name


@dataclass(frozen=True)
class Endpoints:
    """The run's endpoints, in burst order."""
    items: tuple = tuple(Endpoint(e, contract.sleep_path(e)) for e in contract.ENDPOINTS)

    @classmethod
    def of_paths(cls, paths):
        """--path PATH ...: an endpoint per path, named by the path itself."""
        return cls(tuple(Endpoint(path, path) for path in paths))

    @property
    def names(self):
        return tuple(e.name for e in self.items)

    @property
    def lab_only(self):
        """Only the lab's own endpoints, by their own names: the run is against the lab's server, whose
        /pool must answer (the checks refuse it otherwise)."""
        return bool(self.items) and all(e.name == e.lab for e in self.items)

    def named(self, name):
        return next((e for e in self.items if e.name == name), None)

    def of_request(self, request_name):
        """The endpoint's name of a request Locust reports by `request_name` (its path), or None: a request
        of a user's own that is not a burst endpoint's."""
        return next((e.name for e in self.items if e.request_name == request_name), None)

    def of_lab(self, lab_endpoint):
        """The name of the run's endpoint that is the lab's `lab_endpoint` ('postgres'), or None."""
        return next((e.name for e in self.items if e.lab == lab_endpoint), None)


def check_path(path):
    """`path` as --path takes it, or ValueError saying what is wrong with it and how to write it.

    A path alone: the host is -H's, and the query the lab's (?seconds= to its own server only),
    so a '?' or '#' is refused rather than sent as part of a name.
    """
    if not path or not path.strip():
        raise ValueError("--path is empty: give a path such as --path /items")
    if any(character.isspace() for character in path):
        raise ValueError(f"--path {path!r} has whitespace in it: give the path as the server serves it, such as "
                         f"--path /items")
    if "://" in path or path.startswith("//"):
        raise ValueError(f"--path {path} is a full URL: give the host with -H and the path alone, such as "
                         f"-H http://127.0.0.1:8000 --path /items")
    if not path.startswith("/"):
        raise ValueError(f"--path {path} has no leading slash: write --path /{path}")
    for mark, what in (("?", "a query"), ("#", "a fragment")):
        if mark in path:
            raise ValueError(f"--path {path} has {what} ({mark}): the lab sends the path alone; write "
                             f"--path {path.split(mark, 1)[0]}")
    return path


def check_paths(paths):
    """Every --path checked (ValueError for the first bad one), each once."""
    for path in paths:
        check_path(path)
        if paths.count(path) > 1:
            raise ValueError(f"--path {path} is given {paths.count(path)} times: give each path once")
    return tuple(paths)
