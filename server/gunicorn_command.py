"""`python3 -m server.gunicorn_command ARGS`: Gunicorn, once the lab's settings are known to be good.

Gunicorn reads WEB_CONCURRENCY with a bare int() while it is being imported, before it reads
gunicorn.conf.py: a value such as `abc` would end in its traceback instead of the lab's one line.
"""

import os
import sys

from server.config import ConfigError, load


def main():
    try:
        settings = load()
    except ConfigError as error:
        sys.exit(f"pool-lab: {error}")
    # The checked value: Gunicorn's int() would fail on a blank one, which the lab reads as unset.
    os.environ["WEB_CONCURRENCY"] = str(settings["WEB_CONCURRENCY"])
    from gunicorn.app.wsgiapp import run

    sys.exit(run())


if __name__ == "__main__":
    main()
