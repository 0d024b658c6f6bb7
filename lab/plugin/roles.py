"""This process's part in a Locust run, decided once from its runner, as Locust decides its runner
class (LocalRunner, MasterRunner, WorkerRunner): each role builds the components it needs, and no
component asks the runner's type again.

Components that start with the run listen to Options.run_starting, in the order they are built
here: the preparation (facts, prefix) comes before the intake that opens the request log there.
"""

from locust.runners import MasterRunner, WorkerRunner

from .answers import AnswerCollector, AnswerSender, Intake, LocalAnswers
from .burst import Burst, DistributedBurst
from .gates import Gates, WorkerGates
from .interrupt import Interruption
from .lost_workers import LostWorkers
from .options import Options
from .preparation import Preparation
from .probe import DistributedProbeRun, ProbeReporter, ProbeRun, ProbeTab
from .reporter import BurstReporter, DistributedSteadySummary, SteadySummary, Summary
from .sent import SentCount, WorkersSent
from .stall import StallWatch
from .users import BurstUser
from .web_ui import WebUIExtension


def give_users(gates, options, sent_count):
    """The users of this process wait at these gates, send with these options and count what they send."""
    BurstUser.gates, BurstUser.options, BurstUser.sent_count = gates, options, sent_count


class Reporting:
    """The part of the process that reports: the order of the burst, its answers, its report."""

    burst_order = Burst
    steady_summary = SteadySummary
    probe_run = ProbeRun

    def __init__(self, environment, options, sent, gates=None):
        self.burst = self.burst_order(environment, options, gates)
        self.preparation = Preparation(environment, options, self.burst)
        self.intake = Intake(environment, options, self.preparation, self.burst)
        self.summary = Summary(environment)
        self.reporter = BurstReporter(environment, options, self.preparation, self.burst, self.intake, self.summary)
        self.steady = self.steady_summary(environment, options, self.summary, sent)
        self.stall = StallWatch(environment, options, self.preparation, self.burst)
        self.web_ui = WebUIExtension(environment, self.preparation, self.reporter) if environment.web_ui else None
        self.probe = self.probe_run(environment, options, self.preparation, sent, gates)
        self.probe_reporter = ProbeReporter(environment, options, self.preparation, self.probe, self.summary)
        if self.web_ui:
            self.probe_tab = ProbeTab(environment, self.web_ui, self.preparation, self.probe, self.probe_reporter)


class DistributedReporting(Reporting):
    burst_order = DistributedBurst
    steady_summary = DistributedSteadySummary
    probe_run = DistributedProbeRun


class Local:
    """One process: it runs the users and reports."""

    def __init__(self, environment):
        self.options = Options(environment)
        self.gates = Gates(environment, self.options)
        self.sent = SentCount(environment, self.options)
        give_users(self.gates, self.options, self.sent)
        self.reporting = Reporting(environment, self.options, self.sent, self.gates)
        self.interruption = Interruption(environment)
        self.answers = LocalAnswers(environment, self.options, self.reporting.intake)


class Master:
    """Locust's master: it runs no users; it orders the workers' burst, collects their answers and reports."""

    def __init__(self, environment):
        self.options = Options(environment)
        self.sent = WorkersSent(environment, self.options)
        self.reporting = DistributedReporting(environment, self.options, self.sent)
        self.interruption = Interruption(environment)
        self.answers = AnswerCollector(environment, self.options, self.reporting.intake)
        reporting = self.reporting
        self.lost_workers = LostWorkers(environment, self.options, reporting.preparation, reporting.burst, self.answers)


class Worker:
    """A worker: it runs users behind gates the master opens, and sends their answers; it writes nothing."""

    def __init__(self, environment):
        self.options = Options(environment)
        self.gates = WorkerGates(environment, self.options)
        self.sent = SentCount(environment, self.options)
        give_users(self.gates, self.options, self.sent)
        self.answers = AnswerSender(environment, self.options, self.gates)


def role_for(runner_class):
    """The role for a runner of this class: Locust's LocalRunner (or any other) is one process."""
    if issubclass(runner_class, MasterRunner):
        return Master
    if issubclass(runner_class, WorkerRunner):
        return Worker
    return Local
