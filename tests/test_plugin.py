"""lab.plugin in-process, with a runner stand-in: the burst's order, and its answers' hand-over between
a master and its workers (as Locust's own tests do with mocked_rpc). The real thing runs in test_locust.py
and test_distributed.py."""

import argparse
import csv
import json
from types import SimpleNamespace

import gevent
import pytest
from locust.env import Environment
from locust.rpc import Message

from lab.plugin import BurstUser, roles
from lab.plugin.answers import ANSWERS, FLUSH, FLUSHED
from lab.plugin.gates import OPEN_GATE
from lab.servers import free_port


class PythonUser(BurstUser):
    endpoint = "python"


class PostgresUser(BurstUser):
    endpoint = "postgres"


class StandInRunner:
    """What the lab's components use of a Locust runner: send_message is recorded, and the test
    delivers messages to the listeners registered for them."""

    def __init__(self, environment, users):
        self.environment = environment
        self.sent = []  # (message type, data), in order
        self.listeners = {}
        # Per user class: spawned here (a worker's share), spawned in all (the target), reported by workers.
        self.user_classes_count = dict(users)
        self.target_user_classes_count = dict(users)
        self.reported_user_classes_count = dict(users)
        self.clients = SimpleNamespace(all=[])
        self.state = "running"
        self.stopped = self.quit_called = False

    def register_message(self, msg_type, listener, concurrent=False):
        self.listeners[msg_type] = listener

    def send_message(self, msg_type, data=None, client_id=None):
        self.sent.append((msg_type, data))

    def deliver(self, msg_type, data=None, node_id="worker-1"):
        self.listeners[msg_type](environment=self.environment, msg=Message(msg_type, data, node_id))

    def stop(self):
        self.stopped = True
        self.environment.events.test_stop.fire(environment=self.environment)

    def quit(self):
        self.quit_called = True


def environment(tmp_path, users, **options):
    """A Locust Environment with a stand-in runner, the lab's options and a server that is not there
    (no facts: no prediction, which these tests do not need)."""
    parsed = argparse.Namespace(**{"behaviour": "burst", "sleep_seconds": "1", "idle_wait": "0", "calibrate": False,
                                   "csv_prefix": str(tmp_path / "run"), "headless": False, **options})
    env = Environment(user_classes=[PythonUser, PostgresUser], host=f"http://127.0.0.1:{free_port()}",
                      parsed_options=parsed)
    env.runner = StandInRunner(env, users)
    return env


def answer(env, endpoint, sent=1000.0, seconds=1.0, pid=101):
    """Fire Locust's request event for one answered sleep, as a user's request does."""
    body = json.dumps({"started_at": sent, "finished_at": sent + seconds, "pid": pid})
    env.events.request.fire(request_type="GET", name=f"/sleep/{endpoint}/", response_time=seconds * 1000,
                            response_length=len(body), response=SimpleNamespace(status_code=200, text=body),
                            exception=None, start_time=sent, context={})


def record(endpoint, sent=1000.0, seconds=1.0):
    return {"endpoint": endpoint, "request_type": "GET", "name": f"/sleep/{endpoint}/", "response_time": seconds * 1000,
            "response_length": 50, "start_time": sent, "status_code": 200, "exception": None,
            "timing": {"endpoint": endpoint, "sent": sent, "done": sent + seconds, "server_started": sent,
                       "server_finished": sent + seconds, "pool_wait": "", "connect_seconds": "",
                       "query_seconds": "", "pid": 101}}


def start(env):
    env.events.test_start.fire(environment=env)
    env.events.spawning_complete.fire(user_count=sum(env.runner.target_user_classes_count.values()))
    gevent.sleep(0)  # the greenlets the start spawned run


def settle(until, timeout=2.0):
    """Let the components' greenlets run until `until()` holds (the burst's end runs in a greenlet of its own)."""
    with gevent.Timeout(timeout):
        while not until():
            gevent.sleep(0.01)


def waves(tmp_path):
    with open(tmp_path / "run_waves.csv", newline="") as rows:
        return [(row["endpoint"], row["size"]) for row in csv.DictReader(rows) if row["wave"]]


def test_each_runner_has_its_role():
    from locust.runners import LocalRunner, MasterRunner, WorkerRunner

    assert [roles.role_for(runner) for runner in (LocalRunner, MasterRunner, WorkerRunner)] == [
        roles.Local, roles.Master, roles.Worker]


def test_a_burst_opens_python_first_postgres_after_every_python_answer_and_ends_after_the_last(tmp_path, capsys):
    env = environment(tmp_path, {"PythonUser": 2, "PostgresUser": 2})
    gates = roles.Local(env).gates
    start(env)
    assert gates.is_open("python") and not gates.is_open("postgres")
    answer(env, "python")
    assert not gates.is_open("postgres")
    answer(env, "python", seconds=1.01)
    assert gates.is_open("postgres") and not env.runner.stopped
    answer(env, "postgres")
    gevent.sleep(0)
    assert not env.runner.stopped  # one postgres answer still to come
    answer(env, "postgres", seconds=1.02)
    settle(lambda: env.runner.stopped)  # the web UI's run: stopped, not quit
    assert waves(tmp_path) == [("python", "2"), ("postgres", "2")]
    output = capsys.readouterr().out
    assert output.count("python: 2 requests") == 1 and "postgres: 2 requests" in output
    # The request log is an output: a row per answer, as they came.
    with open(tmp_path / "run_requests.csv", newline="") as log:
        assert [row["name"] for row in csv.DictReader(log)] == ["/sleep/python/"] * 2 + ["/sleep/postgres/"] * 2


def test_a_steady_run_opens_every_gate_and_keeps_no_answers(tmp_path, capsys):
    env = environment(tmp_path, {"PythonUser": 1, "PostgresUser": 1}, behaviour="steady")
    local = roles.Local(env)
    start(env)
    assert local.gates.is_open("python") and local.gates.is_open("postgres")
    for _ in range(3):
        local.sent.add("python")  # as BurstUser.burst_request does when a request leaves
    answer(env, "python")
    env.stats.log_request("GET", "/sleep/python/", 1000, 50)  # what Locust's statistics make of it
    env.stats.log_error("GET", "/sleep/python/", "CatchResponseError('connection_lost: the server closed ...')")
    env.stats.log_request("GET", "/sleep/python/", 5, 0)
    assert local.reporting.intake.records == []
    env.runner.stop()
    output = capsys.readouterr().out
    assert "pool-lab steady run" in output
    assert "python: sent 3 = answered 1 + failed 1 + in flight 1; failures: connection_lost 1; response time" in output
    assert not (tmp_path / "run_waves.csv").exists()


def test_a_worker_hands_over_on_its_endpoints_last_answer_and_on_flush_then_says_flushed(tmp_path):
    env = environment(tmp_path, {"PythonUser": 2, "PostgresUser": 2})
    worker = roles.Worker(env)
    runner = env.runner
    env.events.test_start.fire(environment=env)
    try:
        assert not worker.gates.is_open("python")  # a burst's gates are closed until the master opens them
        runner.deliver(OPEN_GATE, "python", node_id="master")
        assert worker.gates.is_open("python") and not worker.gates.is_open("postgres")
        answer(env, "python")
        assert runner.sent == []  # one python answer of this worker still to come
        answer(env, "python")
        [(kind, records)] = runner.sent
        assert kind == ANSWERS and [r["name"] for r in records] == ["/sleep/python/"] * 2
        assert records[0]["timing"]["pid"] == 101
        runner.sent.clear()
        runner.deliver(OPEN_GATE, "postgres", node_id="master")
        answer(env, "postgres")
        assert runner.sent == []
        # The run stops with one postgres answer still in flight: the master asks for what the worker holds.
        runner.deliver(FLUSH, node_id="master")
        assert [kind for kind, _ in runner.sent] == [ANSWERS, FLUSHED]
        assert [r["name"] for r in runner.sent[0][1]] == ["/sleep/postgres/"]
    finally:
        env.events.test_stop.fire(environment=env)
    assert [kind for kind, _ in runner.sent] == [ANSWERS, FLUSHED]  # nothing left to send at the stop
    assert not (tmp_path / "run_requests.csv").exists()  # a worker writes nothing


def test_a_worker_hands_over_what_it_holds_every_interval(tmp_path, monkeypatch):
    monkeypatch.setattr("lab.plugin.answers.ANSWERS_INTERVAL", 0.05)
    env = environment(tmp_path, {"PythonUser": 3, "PostgresUser": 0})
    roles.Worker(env)
    env.events.test_start.fire(environment=env)
    try:
        env.runner.deliver(OPEN_GATE, "python", node_id="master")
        answer(env, "python")
        gevent.sleep(0.2)
        assert [(kind, len(records)) for kind, records in env.runner.sent] == [(ANSWERS, 1)]
    finally:
        env.events.test_stop.fire(environment=env)


def test_a_master_collects_from_two_workers_and_ignores_late_answers_of_a_reported_run(tmp_path, capsys):
    env = environment(tmp_path, {"PythonUser": 2, "PostgresUser": 2})
    master = roles.Master(env)
    runner = env.runner
    start(env)
    assert runner.sent == [(OPEN_GATE, "python")]
    runner.deliver(ANSWERS, [record("python")], node_id="worker-1")
    assert runner.sent == [(OPEN_GATE, "python")]
    runner.deliver(ANSWERS, [record("python", seconds=1.01)], node_id="worker-2")
    assert runner.sent == [(OPEN_GATE, "python"), (OPEN_GATE, "postgres")]
    runner.deliver(ANSWERS, [record("postgres")], node_id="worker-1")
    runner.deliver(ANSWERS, [record("postgres", seconds=1.02)], node_id="worker-2")
    settle(lambda: runner.stopped)
    result = json.loads((tmp_path / "run_result.json").read_text())
    assert {e: len(done) for e, done in result["completions"].items()} == {"python": 2, "postgres": 2}
    # A worker's answer that comes after the report: not counted, not logged, not reported again.
    runner.deliver(ANSWERS, [record("postgres", seconds=3.0)], node_id="worker-2")
    env.events.test_stop.fire(environment=env)
    assert len(master.reporting.intake.records) == 4
    with open(tmp_path / "run_requests.csv", newline="") as log:
        assert len(list(csv.DictReader(log))) == 4
    assert capsys.readouterr().out.count("python: 2 requests") == 1  # reported once
    assert waves(tmp_path) == [("python", "2"), ("postgres", "2")]


def test_a_stopping_master_asks_its_workers_for_their_last_answers_first(tmp_path, capsys):
    env = environment(tmp_path, {"PythonUser": 2, "PostgresUser": 2})
    roles.Master(env)
    runner = env.runner
    runner.clients.all = [SimpleNamespace(id=f"worker-{n}", state="running", user_classes_count={}) for n in (1, 2)]
    start(env)
    stopping = gevent.spawn(env.events.test_stopping.fire, environment=env)
    gevent.sleep(0)
    assert runner.sent[-1] == (FLUSH, None)
    runner.deliver(ANSWERS, [record("python")], node_id="worker-1")
    runner.deliver(FLUSHED, node_id="worker-1")
    assert not stopping.ready()  # worker-2 has not said FLUSHED yet
    runner.deliver(FLUSHED, node_id="worker-2")
    stopping.join(timeout=1)
    assert stopping.ready()
    env.events.test_stop.fire(environment=env)
    assert "STOPPED EARLY: 2 sent, 1 answered, 0 failed, 1 still in flight" in capsys.readouterr().out


@pytest.mark.parametrize("role", [roles.Local, roles.Master])
def test_a_stop_before_the_burst_ends_reports_sent_answered_and_in_flight(tmp_path, capsys, role):
    env = environment(tmp_path, {"PythonUser": 3, "PostgresUser": 3})
    role(env)
    start(env)
    if role is roles.Local:
        answer(env, "python")
    else:
        env.runner.deliver(ANSWERS, [record("python")], node_id="worker-1")
    env.events.test_stop.fire(environment=env)
    output = capsys.readouterr().out
    assert "STOPPED EARLY: 3 sent, 1 answered, 0 failed, 2 still in flight" in output
    assert "postgres: STOPPED EARLY: never began (the run stopped first)" in output
    with open(tmp_path / "run_waves.csv", newline="") as rows:
        assert [row["note"] for row in csv.DictReader(rows) if row["note"]] == [
            "COUNTS: sent 3 = answered 1 + failed 0 + in flight 2",
            "STOPPED EARLY: 3 sent, 1 answered, 0 failed, 2 still in flight",
            "STOPPED EARLY: never began (the run stopped first)"]


def test_options_the_web_ui_form_gives_as_typed_are_checked_at_the_start(tmp_path, caplog):
    env = environment(tmp_path, {"PythonUser": 1, "PostgresUser": 1}, idle_wait="abc")
    local = roles.Local(env)
    env.events.test_start.fire(environment=env)
    assert env.runner.quit_called
    assert "--idle-wait must be a number, got 'abc'" in caplog.text
    # No run began: nothing was prepared, no request log opened.
    assert not local.reporting.intake.open and not (tmp_path / "run_requests.csv").exists()


def path_answer(env, path, sent=1000.0, seconds=0.5):
    """Fire Locust's request event for one answer of another app's path: no timing fields in its body."""
    env.events.request.fire(request_type="GET", name=path, response_time=seconds * 1000, response_length=2,
                            response=SimpleNamespace(status_code=200, text="{}"), exception=None, start_time=sent,
                            context={})


def test_paths_replace_the_lab_endpoints_with_a_user_class_each_bursting_in_their_order(tmp_path, capsys):
    env = environment(tmp_path, {"PathUser1": 2, "PathUser2": 1}, path=["/b", "/a"], sleep_seconds="")
    local = roles.Local(env)
    assert [(cls.__name__, cls.path, cls.endpoint) for cls in env.user_classes] == [
        ("PathUser1", "/b", "/b"), ("PathUser2", "/a", "/a")]
    start(env)
    gates = local.gates
    assert gates.is_open("/b") and not gates.is_open("/a")
    # Not the lab's server: no ?seconds=, whatever --sleep-seconds says.
    assert local.options.settings.query_for("/b") == {}
    path_answer(env, "/b")
    path_answer(env, "/login")  # a request of no burst endpoint: not counted
    assert not gates.is_open("/a")
    path_answer(env, "/b", seconds=0.51)
    assert gates.is_open("/a")
    path_answer(env, "/a")
    settle(lambda: env.runner.stopped)
    assert waves(tmp_path) == [("/b", "2"), ("/a", "1")]
    output = capsys.readouterr().out
    assert "/b: 2 requests" in output and "inferred: no limit below 2" in output
    with open(tmp_path / "run_result.json") as result:
        assert [s["endpoint"] for s in json.load(result)["summaries"]] == ["/b", "/a"]


def test_a_master_goes_on_without_a_lost_worker_and_counts_what_it_held(tmp_path, capsys):
    env = environment(tmp_path, {"PythonUser": 4, "PostgresUser": 4})
    roles.Master(env)
    runner = env.runner
    # Each worker runs 2 + 2 users; worker-2 will stop sending heartbeats with 2 python requests out.
    workers = [SimpleNamespace(id=f"worker-{n}", state="running", user_classes_count={"PythonUser": 2,
                                                                                     "PostgresUser": 2})
               for n in (1, 2)]
    runner.clients.all = workers
    start(env)
    gevent.sleep(0.6)  # the watch has seen both workers' users
    runner.deliver(ANSWERS, [record("python"), record("python")], node_id="worker-1")
    assert runner.sent == [(OPEN_GATE, "python")]  # still waiting for worker-2's
    workers[1].state, workers[1].user_classes_count = "missing", {}  # as Locust's heartbeat_worker does
    settle(lambda: (OPEN_GATE, "postgres") in runner.sent)
    runner.deliver(ANSWERS, [record("postgres"), record("postgres")], node_id="worker-1")
    settle(lambda: runner.stopped)
    result = json.loads((tmp_path / "run_result.json").read_text())
    assert [s["counts"] for s in result["summaries"]] == [{"sent": 4, "answered": 2, "failed": 0, "in_flight": 2},
                                                          {"sent": 2, "answered": 2, "failed": 0, "in_flight": 0}]
    output = capsys.readouterr().out
    assert ("WARNING: Locust worker worker-2 was lost mid-burst (no heartbeat for 3 s) holding 2 requests unanswered "
            "(python 2), counted in flight; the burst goes on without them; its users of postgres (2) never sent"
            ) in output, output


def test_steady_users_keep_locusts_client_and_burst_users_send_once(tmp_path, monkeypatch):
    from geventhttpclient.client import HTTPClientPool

    from lab.single_attempt import SingleAttemptClientPool

    for behaviour, pool in (("burst", SingleAttemptClientPool), ("steady", HTTPClientPool)):
        env = environment(tmp_path, {"PythonUser": 1}, behaviour=behaviour)
        local = roles.Local(env)
        local.options.settings = local.options.settings.read(env.parsed_options)  # as a test start reads them
        monkeypatch.setattr(PythonUser, "host", env.host)  # as Locust's runner sets it
        assert type(PythonUser(env).client.client.clientpool) is pool


def test_a_silent_burst_says_it_stalled_in_the_log_and_the_status_until_an_answer_comes(tmp_path, caplog,
                                                                                          monkeypatch):
    from lab.plugin import stall

    # No server here, so no prediction: the threshold is STALL_WITHOUT_PREDICTION (+ STALL_MARGIN), made short.
    monkeypatch.setattr(stall, "STALL_WITHOUT_PREDICTION", 0.0)
    monkeypatch.setattr(stall, "STALL_MARGIN", 0.3)
    env = environment(tmp_path, {"PythonUser": 2, "PostgresUser": 2})
    local = roles.Local(env)
    start(env)
    prep = local.reporting.preparation
    settle(lambda: prep.status.startswith("STALLED"))
    assert prep.status.startswith("STALLED: python: 2 of 2 requests in flight, no answer for 0.")
    assert "no prediction: stalled means silent for 0 s" in prep.status
    assert [r.message for r in caplog.records if r.message.startswith("STALLED")] == [prep.status]  # said once
    answer(env, "python")
    settle(lambda: prep.status == "burst running")
    settle(lambda: prep.status.startswith("STALLED: python: 1 of 2"))
