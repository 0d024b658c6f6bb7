"""Failures that name their cause, on real servers; the worker keeps serving."""

from conftest import SLEEP


def test_pool_timeout_is_a_503_that_names_the_limit(lab, fire):
    server = lab("green", POOL_SIZE=1, MAX_OVERFLOW=0, POOL_TIMEOUT=1)
    # One request holds the only connection for 3 sleeps; the other waits 1 s and gives up.
    results = fire(server, f"/sleep/postgres/?seconds={3 * SLEEP}", 2)
    statuses = sorted(status for _, status, _ in results)
    assert statuses == [200, 503]
    status, headers, body = server.get(f"/sleep/postgres/?seconds={SLEEP}")
    assert status == 200
    refused = next(body for _, status, body in results if status == 503)
    assert b'"error":"pool_timeout"' in refused
    assert b"POOL_TIMEOUT=1s" in refused and b"pool_size 1 + max_overflow 0" in refused
