"""The run's report, in the process that reports: a burst's summary and files, or a steady run's summary."""

import logging

import gevent
import locust.runners

from .. import files, kernel, render
from ..analysis import connection_costs, summarize
from ..records import completions, server_timings

log = logging.getLogger("pool-lab")


class Summary:
    """Where the lab's summary goes: the last thing a headless run prints, or the web UI's Logs tab.

    Locust prints its own statistics tables as a headless run exits, after every event but `quit`:
    the summary waits for that event, so the lab's verdict is what stays on the screen. The web UI
    shows log records in its Logs tab, not what is printed: there it is printed and logged too.
    """

    def __init__(self, environment):
        self.environment = environment
        self.pending = []
        environment.events.quit.add_listener(self.print_pending)

    def say(self, text):
        if self.environment.parsed_options and self.environment.parsed_options.headless:
            self.pending.append(text)
        else:
            print(text, flush=True)
            log.info("%s", text)

    def print_pending(self, **kwargs):
        texts, self.pending = self.pending, []
        for text in texts:
            print(text, flush=True)


class BurstReporter:
    """Once per burst, when its last answer is in or the run stops: the summary on the terminal, the waves,
    server timings, memory and result files, and the rows of the web UI's Waves tab."""

    def __init__(self, environment, options, preparation, burst, intake, summary):
        self.options = options
        self.summary = summary
        self.preparation = preparation
        self.burst = burst
        self.intake = intake
        self.environment = environment
        self.waves_rows = []  # the last burst's, for the web UI's Waves tab
        self.waves_csv = None
        self.waves_png = None  # the last burst's stairs, drawn for the web UI's Waves tab
        self.written = []  # the files the last burst wrote
        options.run_starting.add_listener(self.clear)
        burst.finished.add_listener(self.report)
        environment.events.test_stop.add_listener(self.on_test_stop)

    def clear(self, **kwargs):
        """A new run: the last burst's rows and picture are no longer current."""
        self.waves_rows, self.waves_png, self.written = [], None, []

    def on_test_stop(self, **kwargs):
        if self.options.settings.burst:
            self.report()  # at once if the run stopped before its burst was done

    def report(self):
        records = self.intake.finish()
        if records is None:
            return  # reported already
        prep = self.preparation
        prep.stop_sampling()
        done, timings = completions(records), server_timings(records)
        never_began = self.burst.never_began()
        if not done and not self.burst.sent:
            self.summary.say("pool-lab: no request was answered")
            return
        endpoints = self.options.settings.endpoints
        # The sleep groups the waves only where the facts are the lab's: else the answers' gaps do.
        labs = {e.name: e.lab for e in endpoints.items}
        summaries = summarize(done, prep.sleep if prep.facts else None, prep.facts, dict(self.burst.sent), timings,
                              endpoints.names, labs)
        self.waves_csv = f"{prep.prefix}_waves.csv"
        files.write_waves_csv(self.waves_csv, summaries, prep.warnings, never_began, prep.facts)
        files.write_server_timings(f"{prep.prefix}_server_timing.csv", timings)
        costs = connection_costs(timings, prep.memory_sample, None if (
            prep.memory_sample or not self.burst.sent[prep.postgres]) else prep.memory_note,
            prep.pooler_sample)
        if prep.overflows_before is not None:
            costs["listen_overflows"] = kernel.listen_overflows() - prep.overflows_before
            costs["somaxconn"] = kernel.somaxconn()
        if prep.memory_sample:
            files.write_memory_sample(f"{prep.prefix}_memory.csv", (prep.sleep or 0) / 2, prep.memory_sample)
        files.write_result(f"{prep.prefix}_result.json", prep.facts, summaries, done, costs)
        self.written = [f"{prep.prefix}{suffix}" for suffix in ("_requests.csv", "_waves.csv", "_server_timing.csv",
                                                                "_memory.csv", "_result.json")
                        if suffix != "_memory.csv" or prep.memory_sample]
        if self.environment.web_ui:
            from ..plot import plot_burst  # matplotlib: only where a picture is shown

            self.waves_png = f"{prep.prefix}_waves.png"
            plot_burst(self.waves_png, render.burst_title(prep.facts, self.environment.host, prep.started),
                       summaries, done)
            self.written.append(self.waves_png)
        self.waves_rows = render.waves_tab_rows(summaries, prep.facts, prep.warnings, never_began, labs)
        self.summary.say("\n".join([render.format_summary(summaries, prep.facts, prep.warnings, never_began,
                                                          prep.unpredicted, labs),
                                    *render.format_costs(costs), f"waves: {self.waves_csv}"]))


class SteadySummary:
    """A steady run's response times, from Locust's own statistics, when the run stops."""

    def __init__(self, environment, options, summary, sent):
        self.environment = environment
        self.options = options
        self.summary = summary
        self.sent = sent  # the requests the users sent (lab.plugin.sent): what is left in flight at the stop
        environment.events.test_stop.add_listener(self.on_test_stop)

    def on_test_stop(self, **kwargs):
        if self.options.settings.steady:
            self.print()

    def print(self, **kwargs):
        counts = render.format_steady(self.environment.stats, self.sent.sent, self.endpoint_of,
                                      self.options.settings.endpoints.names)
        self.summary.say(f"pool-lab steady run (waves are measured in burst runs)\n{counts}")

    def endpoint_of(self, request_name):
        return self.options.settings.endpoints.of_request(request_name) or request_name


class DistributedSteadySummary(SteadySummary):
    """On a master: the summary waits for the workers' last statistics, which come after the stop."""

    def on_test_stop(self, environment, **kwargs):
        if not self.options.settings.steady:
            return
        if environment.parsed_options.headless:
            # The workers send their last statistics when told to quit, after this event.
            environment.events.quitting.add_listener(self.print)
        else:
            # A stopped worker sends its statistics on its next report, at most this late.
            gevent.spawn_later(locust.runners.WORKER_REPORT_INTERVAL + 0.5, self.print)
