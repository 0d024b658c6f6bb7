"""What this machine's kernel says about a burst's connections (Linux; None elsewhere)."""

from pathlib import Path


def listen_overflows():
    """Connections the kernel turned away because a listen queue was full (TcpExt ListenOverflows).

    Machine-wide, since boot: take it before and after a burst. A turned-away client is not
    refused: its SYN goes unanswered and it tries again after 1 s, then 2 s, 4 s...
    """
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], values.split()[1:]))
            return int(counters["ListenOverflows"]) if "ListenOverflows" in counters else None
    return None


def somaxconn():
    """The kernel's cap on any listen queue (net.core.somaxconn), whatever backlog a server asks for."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return None
