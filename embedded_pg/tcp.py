"""An embedded server that also listens on loopback TCP: what a TCP handshake adds to a new connection."""

from . import postgres
from .start import start


def start_on_tcp(pgdata, port, max_connections=None):
    """An embedded server of its own that listens on 127.0.0.1:`port` and on its Unix socket:
    (handle, TCP URL, Unix socket URL), two ways into one server.

    The lab's server listens on a Unix socket only (pgserver starts it so); this one lets
    the lab measure what a loopback TCP handshake adds to a new connection.
    """
    handle = start(pgdata, max_connections)
    info = handle.get_postmaster_info()
    # With -o, pg_ctl restart replaces the start options, so the socket directory is given again.
    postgres.pg_ctl(["-w", "-m", "fast", "-o", f"-h 127.0.0.1 -p {port} -k {info.socket_dir}", "restart"],
                    handle.pgdata)
    handle.ensure_postgres_running()  # the new postmaster's pid, for the stop at exit
    # The socket's name carries the port too, which pgserver's URL leaves to libpq's default.
    return handle, f"postgresql://postgres@127.0.0.1:{port}/postgres", f"{handle.get_uri()}&port={port}"
