"""A burst's summaries as words: the terminal summary, the web UI's Waves tab, and tables."""

import re
from collections import Counter

from contract import ERRORS, FAILURE_CAUSES, OTHER, POOLER_QUERY_WAIT_TIMEOUT, endpoint_of

from .analysis import counts_note, failure_words, stop_notes, stopped_worker, worker_spread
from .inference import LIMIT, NO_LIMIT
from .waves import limits, pooler_of

# A failure's exception as a master's statistics keep it, its repr: CatchResponseError('...').
LOCUST_ERROR_REPR = re.compile(r"^\w+\((['\"])(.*)\1\)$", re.DOTALL)
# Why an endpoint has no prediction, when /pool answered: the prediction is of the lab's sleep endpoints.
NOT_A_LAB_ENDPOINT = "not one of the lab's sleep endpoints"

# The web UI's Waves tab: a row per endpoint of the last burst, (key, column title).
WAVES_TAB = (("endpoint", "Endpoint"), ("sent", "Sent"), ("answered", "Answered"), ("failed", "Failed"),
             ("in_flight", "In flight"), ("waves", "Waves"), ("predicted", "Predicted"),
             ("total_s", "Total (s)"), ("ideal_s", "Ideal (s)"), ("ratio", "Measured/ideal"),
             ("model_s", "Model (s)"), ("model_ratio", "Measured/model"),
             ("inferred", "Inferred"), ("failures", "Failures by cause"), ("note", "Note"))


def sizes(numbers):
    """Wave sizes as the lab writes them everywhere: (15, 15, 5) -> '15 15 5'."""
    return " ".join(str(number) for number in numbers)


def counted(number, noun):
    """1 -> '1 request', 5 -> '5 requests': a count with its noun, singular or plural."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def waves_phrase(numbers):
    """Waves as the summary says them: (5,) -> '1 wave of 5', (1, 1, 1) -> '3 waves of 1', (3, 2) -> 'waves 3 2'.

    'waves 5' beside 'waves 1 1 1 1 1' read as five waves and one; waves of one size say their count.
    """
    numbers = list(numbers)
    if len(set(numbers)) == 1:
        return f"{counted(len(numbers), 'wave')} of {numbers[0]}"
    return f"waves {sizes(numbers)}"


def ratio_text(ratio, summary):
    """A measured/expected ratio as the summary says it, or why there is none."""
    if ratio is not None:
        return f"{ratio:.2f}"
    if summary.in_flight:
        return "stopped early"
    if summary.cut_short:
        return "none (requests lost with their connections)"
    return "none (0 s sleeps: an ideal of 0 s; the model's ratio is the verdict)"


def format_table(columns, rows, markdown=False):
    """Rows of dicts as a text table (or Markdown); columns: (header, key), or (header, key, ">") right-aligned."""
    cells = [[str(row[key]) for _, key, *_ in columns] for row in rows]
    headers = [header for header, *_ in columns]
    if markdown:
        return "\n".join("| " + " | ".join(line) + " |" for line in [headers, ["---"] * len(headers), *cells])
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(headers)]
    aligns = [str.rjust if column[2:] == (">",) else str.ljust for column in columns]

    def render(line):
        return "  ".join(align(cell, width) for cell, width, align in zip(line, widths, aligns)).rstrip()
    return "\n".join([render(headers), render("-" * w for w in widths), *map(render, cells)])


def uneven_cause(summary, facts, warnings):
    """Why waves may differ from the prediction, named for the pool in use."""
    if any(warning.startswith("another client") for warning in warnings):
        return "another client sent during the burst (see the warning), not the pool alone"
    if warnings:
        return "the server was busy when the burst began (see the warning)"
    spread = worker_spread(summary.endpoint, summary.served_by, summary.prediction.sleep, facts)
    if spread and facts["workers"] > 1 and tuple(w.size for w in summary.waves) == spread.wave_sizes:
        return "the workers' spread of the requests, which predicts exactly these waves: see 'served by'"
    closes_overflow = facts["pool_class"].endswith(".QueuePool") and facts["max_overflow"] > 0
    if spread and spread.uneven:
        cause = "the workers' uneven spread of the requests: see 'served by'"
        if summary.endpoint == "postgres" and closes_overflow and max(spread.counts) > facts["pool_limit"]:
            # The busiest worker's share went past its own pool: its later waves shrink as one worker's do.
            cause += ("; and past the pool limit within a worker, QueuePool closes returned overflow "
                      "connections (docs/uneven-waves.md)")
        return cause
    if summary.prediction.timed_out:
        return "the requests PgBouncer dropped at query_wait_timeout finished as a group of their own"
    limited_by_pool = summary.endpoint == "postgres" and summary.prediction.wave_sizes[0] == facts["pool_limit"]
    if limited_by_pool and closes_overflow:
        return "see docs/uneven-waves.md: QueuePool closes returned overflow connections"
    return (f"not a known behaviour of {facts['pool_class'].rsplit('.', 1)[-1]}: look at the waves CSV "
            "and the server's log")


def spread_lines(summary, facts):
    """The summary's word on the workers' spread, for a server of several workers."""
    spread = worker_spread(summary.endpoint, summary.served_by, summary.prediction.sleep, facts)
    if not spread or (len(spread.counts) < 2 and facts["workers"] < 2):
        return []
    served = len(spread.counts)
    if served != facts["workers"]:
        served = f"{served} of {facts['workers']}"
    lines = [f"  served by {served} workers: {' + '.join(map(str, spread.counts))} requests; an even "
             f"spread predicts {spread.even_total:.2f} s, this spread {spread.spread_total:.2f} s"]
    if spread.uneven:
        lines.append(f"  UNEVEN SPREAD: the busiest worker's share costs "
                     f"{spread.spread_total - spread.even_total:.2f} s over an even spread")
    return lines


def inference_lines(summary, facts, lab_endpoint):
    """The limit inferred from the burst's answers alone; where /pool answered, the cause it names for the
    limit found (lab.waves.limits: the reasons the prediction gives), or that the two differ."""
    inferred = summary.inferred
    if inferred is None:
        return []
    lines = [f"inferred: {inferred.text(summary.sent)}"]
    if not (facts and lab_endpoint and summary.prediction) or inferred.verdict not in (LIMIT, NO_LIMIT):
        return lines
    tightest, why = min(limits(lab_endpoint, facts), key=lambda limit: limit[0])
    predicted = min(tightest, summary.sent)
    found = inferred.limit if inferred.verdict == LIMIT else summary.sent
    if summary.prediction.refused or summary.prediction.timed_out:
        return lines  # refusals are not waves: the prediction's own lines compare them
    if found == predicted and inferred.verdict == LIMIT:
        lines.append(f"cause, from /pool: limit {found}: {why}")
    elif found != predicted:
        lines.append(f"INFERRED DIFFERS from /pool: {found} at once inferred, {predicted} predicted (limit "
                     f"{tightest}: {why})")
    return lines


def waves_tab_rows(summaries, facts, warnings=(), never_began=(), lab_endpoints=None):
    """The web UI's Waves tab (WAVES_TAB): a row per endpoint of the burst, beside its prediction."""
    stopped = {endpoint: note for endpoint, _, note in stop_notes(summaries, never_began)}
    lost = stopped_worker(summaries, facts)
    rows = []
    for s in summaries:
        notes = [stopped.get(s.endpoint), lost and s.endpoint in lost.lost and lost.note,
                 *(f"WARNING: {w}" for w in warnings)]
        if s.uneven and s.ratio is not None:
            notes.append(f"UNEVEN: {uneven_cause(s, facts, warnings)}")
        if s.prediction:
            notes += [line.strip() for line in spread_lines(s, facts)]
        inferred = inference_lines(s, facts, (lab_endpoints or {}).get(s.endpoint, s.endpoint))
        notes += inferred[1:]
        rows.append({"endpoint": s.endpoint, **s.counts, "waves": sizes(w.size for w in s.waves),
                     "predicted": sizes(s.prediction.wave_sizes) if s.prediction else "unavailable",
                     "total_s": f"{s.total:.2f}", "ideal_s": f"{s.prediction.ideal_total:.2f}" if s.prediction else "",
                     "ratio": "" if s.ratio is None else f"{s.ratio:.2f}",
                     "model_s": f"{s.prediction.model_total:.2f}" if s.prediction and s.prediction.model_total else "",
                     "model_ratio": "" if s.model_ratio is None else f"{s.model_ratio:.2f}",
                     "inferred": inferred[0].removeprefix("inferred: ") if inferred else "",
                     "failures": failure_words(s),
                     "note": "; ".join(filter(None, notes))})
    return rows + [{**dict.fromkeys((key for key, _ in WAVES_TAB), ""), "endpoint": endpoint, "sent": 0,
                    "note": stopped[endpoint]} for endpoint in never_began]


def pool_words(facts):
    """The pool in a few words: 'pool_size 5 + max_overflow 10', or its class when it has no limit."""
    if facts["pool_limit"] is None:
        return f"{facts['pool_class'].rsplit('.', 1)[-1]}, a new connection per request"
    return f"pool_size {facts['pool_size']} + max_overflow {facts['max_overflow']}"


def burst_title(facts, host, started):
    """Which burst a picture or a tab shows: mode, pool, host and time."""
    if not facts:
        return f"pool-lab burst at {host}, {started} (no /pool: mode and pool unknown)"
    return f"pool-lab burst on the {facts['mode']} mode ({pool_words(facts)}) at {host}, {started}"


def database_bound_note(facts):
    """What bounds a query whose database does not answer on a server that cannot bound it itself (its worker
    blocks in every query: sync, gevent), from /pool's facts; None where the server does (db_grace_seconds) or
    /pool did not say. The one owner of the note: the summary of a postgres burst left without answers adds it,
    and so may any report of a burst that stalls."""
    if not facts or facts.get("db_grace_seconds") is not None or facts.get("worker_timeout") is None:
        return None
    blocked = (f"NOTE: the {facts['mode']} mode's worker blocks in each query, so it cannot bound one whose database "
               f"does not answer")
    if facts["worker_timeout"]:
        return (f"{blocked}: only Gunicorn's worker timeout ({facts['worker_timeout']:g} s) does, by killing the worker "
                f"with every request it holds (docs/design.md#gunicorns-timeouts)")
    return (f"{blocked}, and it runs with --timeout 0: nothing bounds it "
            f"(docs/design.md#why-the-gevent-mode-runs-with---timeout-0)")


def unanswered_by_the_server(summary):
    """Requests of `summary` the server never answered itself: still in flight, or failed without an error of its
    own (no answer, a connection closed)."""
    return summary.in_flight + sum(summary.failures[cause] for cause in FAILURE_CAUSES if cause not in ERRORS)


def format_summary(summaries, facts=None, warnings=(), never_began=(), unpredicted=None, lab_endpoints=None):
    """The burst's summary as the terminal shows it; `unpredicted` says why there are no predictions
    without facts; `lab_endpoints`: name -> the lab's endpoint it is (by default the names themselves)."""
    lab_endpoints = {} if lab_endpoints is None else lab_endpoints
    lines = []
    if facts is not None:
        pool = (f"pool_size {facts['pool_size']} + max_overflow {facts['max_overflow']}, pool timeout "
                f"{facts['timeout']:g} s" if facts["pool_limit"] is not None else
                f"{facts['pool_class'].rsplit('.', 1)[-1]}, a new connection per request")
        ceiling = facts.get("db")
        pooler = pooler_of(facts)
        if pooler:
            pool += (f"; through PgBouncer ({pooler['pool_mode']} pooling): default_pool_size "
                     f"{pooler['default_pool_size']}, reserve_pool_size {pooler['reserve_pool_size']}, max_client_conn "
                     f"{pooler['max_client_conn']}, query_wait_timeout {pooler['query_wait_timeout']:g} s")
        elif facts.get("pgbouncer"):
            pool += f"; through PgBouncer, unavailable: {((ceiling or {}).get('pooler') or {}).get('unavailable')}"
        if ceiling:
            pool += (f"; PostgreSQL max_connections {ceiling['max_connections']}, {ceiling['open_connections']} "
                     f"open, {ceiling['accepts']} more accepted")
        lines.append(f"pool-lab burst on the {facts['mode']} mode: {pool}")
    elif unpredicted:
        lines.append(f"pool-lab burst ({unpredicted}): each limit below is inferred from the answers alone")
    lines += [f"WARNING: {warning}" for warning in warnings]
    stopped = {endpoint: note for endpoint, _, note in stop_notes(summaries, never_began)}
    for s in summaries:
        line = f"{s.endpoint}: {counted(s.sent, 'request')}, total {s.total:.2f} s"
        if s.waves:
            line += f", {waves_phrase(w.size for w in s.waves)}"
        lines.append(line)
        if s.endpoint in stopped:
            lines.append(f"  {stopped[s.endpoint]}")
        lab = lab_endpoints.get(s.endpoint, s.endpoint)
        if s.waves and s.prediction is None:
            why = NOT_A_LAB_ENDPOINT if facts else unpredicted or "the server's /pool did not answer"
            lines.append(f"  prediction: unavailable ({why})")
        elif s.waves:
            p = s.prediction
            measured = ratio_text(s.ratio, s)
            lines.append(f"  predicted: {sizes(p.wave_sizes)} ({p.reason}); first wave "
                         f"{p.wave_sizes[0]}, measured {s.waves[0].size}; ideal total "
                         f"{p.ideal_total:.2f} s, measured/ideal {measured}")
            lines.append(f"  {p.model_explained()}" + (
                "" if p.model_total is None else
                f"; measured/model {ratio_text(s.model_ratio, s)}"))
            if p.refused:
                lines.append(f"  predicted {s.sent - p.refused - p.timed_out} succeeded and {p.refused} {p.refused_as}; "
                             f"measured {s.answered} succeeded and "
                             f"{s.failures[p.refused_as]} {p.refused_as}")
            if p.timed_out:
                lines.append(f"  predicted {p.timed_out} {POOLER_QUERY_WAIT_TIMEOUT} at about {p.timed_out_at:g} s; "
                             f"measured {s.failures[POOLER_QUERY_WAIT_TIMEOUT]}")
            if s.uneven and s.ratio is not None:
                lines.append(f"  UNEVEN: the waves differ from the prediction ({uneven_cause(s, facts, warnings)})")
            lines += spread_lines(s, facts)
        if s.waves:
            lines += [f"  {line}" for line in inference_lines(s, facts, lab)]
        lines.append(f"  {counts_note(s, causes=False)}; failures: {failure_words(s)}")
        note = database_bound_note(facts)
        if note and lab == "postgres" and unanswered_by_the_server(s):
            lines.append(f"  {note}")
    lines += [f"{endpoint}: {stopped[endpoint]}" for endpoint in never_began]
    lost = stopped_worker(summaries, facts)
    if lost:
        lines.append(lost.note)
    return "\n".join(lines)


def format_costs(costs):
    lines = []
    if costs.get("connections_opened"):
        lines.append(f"connections opened: {costs['connections_opened']}, median {costs['connect_median_ms']} ms, "
                     f"95th percentile {costs['connect_p95_ms']} ms each")
    if "peak_backends" in costs:
        lines.append(f"PostgreSQL's client backends of the mode at the peak: {costs['peak_backends']}, "
                     f"{costs['uss_mib_per_backend']} MiB each of their own (USS; {costs['pss_mib_per_backend']} MiB "
                     f"with their share of shared memory, PSS), {costs['uss_mib']} MiB USS in all"
                     + (f"; the mode under test's only: {counted(costs['other_backends'], 'backend')} of other "
                        f"clients left out" if costs.get("other_backends") else ""))
    elif "memory" in costs:
        lines.append(f"memory: {costs['memory']}")
    if "pooler_clients" in costs:
        lines.append(f"PgBouncer at the peak: {costs['pooler_clients']} client connections, "
                     f"{costs['pooler_uss_mib_peak']} MiB of its own (USS; {costs['pooler_uss_mib_rest']} MiB before "
                     f"the burst): {costs['pooler_kib_per_client']} KiB per client connection")
    if costs.get("listen_overflows"):
        lines.append(f"WARNING: the kernel turned away {costs['listen_overflows']} connection attempts during the "
                     f"burst, its listen queue full (machine-wide ListenOverflows; a server's backlog is capped by "
                     f"net.core.somaxconn = {costs['somaxconn']}): each waited for its client's SYN retry, 1 s or more")
    return lines


def format_steady(stats, sent, name_of=endpoint_of, order=()):
    """A steady run's summary from Locust's statistics (`stats`: its RequestStats) and the requests `sent` per
    endpoint: the counts (sent = answered + failed + in flight), failures by cause, response times;
    `name_of` names an entry's endpoint, listed in the run's `order` (others after them)."""
    causes = {}
    for error in stats.errors.values():
        causes.setdefault(name_of(error.name), Counter())[steady_failure_cause(error.error)] += error.occurrences
    entries = {name_of(entry.name): entry for entry in stats.entries.values()}
    lines = []
    for endpoint in sorted(set(entries) | set(sent), key=lambda e: (tuple(order) + (e,)).index(e)):
        entry = entries.get(endpoint)
        finished, failed = (entry.num_requests, entry.num_failures) if entry else (0, 0)
        line = (f"{endpoint}: sent {max(sent.get(endpoint, 0), finished)} = answered {finished - failed} + failed "
                f"{failed} + in flight {max(sent.get(endpoint, 0) - finished, 0)}")
        if failed:
            line += "; failures: " + ", ".join(f"{c} {causes[endpoint][c]}" for c in FAILURE_CAUSES
                                                if causes.get(endpoint, {}).get(c))
        if entry and entry.num_requests:
            line += (f"; response time median {entry.median_response_time:.0f} ms, 95th percentile "
                     f"{entry.get_response_time_percentile(0.95):.0f} ms")
        lines.append(line)
    return "\n".join(lines) or "no request was sent"


def steady_failure_cause(error):
    """The cause of a failure as Locust's statistics keep it: the exception itself where the request ran,
    its repr on a master ("CatchResponseError('pool_timeout: no ...')") -> 'pool_timeout'."""
    message = str(error)
    wrapped = LOCUST_ERROR_REPR.match(message)
    code = (wrapped.group(2) if wrapped else message).split(":", 1)[0]
    return code if code in FAILURE_CAUSES else OTHER
