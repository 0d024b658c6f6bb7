"""What a watch of a running burst shares (lab.plugin.stall, lab.plugin.lost_workers): a greenlet of
its own from the run's start to its stop, burst runs only."""

import gevent


class BurstWatch:
    """Runs `watch()` in a greenlet while a burst runs; `reset()` clears what it saw of the last run."""

    def __init__(self, environment, options):
        self.watching = None
        options.run_starting.add_listener(self.start)
        environment.events.test_stop.add_listener(self.stop)

    def start(self, settings, **kwargs):
        self.stop()
        self.reset()
        if settings.burst:
            self.watching = gevent.spawn(self.watch)

    def stop(self, **kwargs):
        if self.watching:
            self.watching.kill(block=False)
            self.watching = None

    def reset(self):
        pass

    def watch(self):
        raise NotImplementedError
