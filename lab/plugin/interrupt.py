"""Ctrl-C of a headless run: the run stops as for SIGTERM (the burst's report says STOPPED EARLY)
and the process exits 130, as a shell expects of an interrupted command, without the bare
`KeyboardInterrupt` gevent's hub prints when the signal lands in its loop."""

import logging
import signal

import gevent

log = logging.getLogger("pool-lab")
INTERRUPTED = 128 + signal.SIGINT


class Interruption:
    def __init__(self, environment):
        self.environment = environment
        if environment.parsed_options and environment.parsed_options.headless:
            gevent.signal_handler(signal.SIGINT, self.on_interrupt)

    def on_interrupt(self):
        if self.environment.process_exit_code == INTERRUPTED:
            raise SystemExit(INTERRUPTED)  # a second Ctrl-C: the user does not want to wait for the report
        log.warning("interrupted (Ctrl-C): stopping the run; Ctrl-C again to quit at once")
        self.environment.process_exit_code = INTERRUPTED
        # The headless main greenlet is the runner's: once it is done, Locust writes its reports and exits.
        self.environment.runner.quit()
