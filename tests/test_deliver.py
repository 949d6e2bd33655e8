"""`plaudit deliver` against a real HTTP receiver on 127.0.0.1 (pytest-httpserver, werkzeug):
signatures a receiver can verify, coalesced messages (a user's grants, highest level first),
retries with backoff, dead letters and --retry-dead, the per-user rate limit, endpoints failing
independently, and at least once through failures, timeouts, a receiver going down and a
deliverer killed with SIGKILL in the middle of a batch."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from plaudit.model.config import load_config
from plaudit.runtime.delivery import Deliverer, select_endpoints
from plaudit.runtime.runner import run_batch
from plaudit.runtime.webhook import signature, verify
from test_outbox import POSTER, TALKER, seed

SECRET = "s3cret-for-tests"
SRC = Path(__file__).resolve().parents[1] / "src"


def _readme_verifier() -> Any:
    """The receiver's check exactly as the README shows it: its Python block, run."""
    readme = (SRC.parent / "README.md").read_text(encoding="utf-8")
    [code] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
              if "def verified(" in block]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["verified"]


readme_verify = _readme_verifier()


@dataclass
class Receiver:
    """A webhook receiver: records every request, answers as `answer` says (status, delay)."""

    server: HTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    answer: Any = None  # (request number, path) -> (status, seconds to wait first)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        with self.lock:
            number = len(self.requests)
            status, delay = self.answer(number, request.path) if self.answer else (200, 0.0)
            body = request.get_data()
            self.requests.append({
                "path": request.path, "body": json.loads(body), "status": status,
                "delay": delay,
                "message_id": request.headers.get("Plaudit-Message-Id"),
                "signed": readme_verify(SECRET.encode(), request.headers["Plaudit-Signature"],
                                        body)})
        time.sleep(delay)
        return Response("ok" if status == 200 else "no", status=status)

    def url(self, path: str = "/hook") -> str:
        return self.server.url_for(path)

    def accepted(self, path: str | None = None) -> list[dict[str, Any]]:
        """The messages answered 200 (the receiver took them, whatever the sender saw)."""
        return [r["body"] for r in self.requests
                if r["status"] == 200 and (path is None or r["path"] == path)]


@pytest.fixture
def receiver():
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    found = Receiver(server)
    server.expect_request("/hook", method="POST").respond_with_handler(found.handle)
    server.expect_request("/other", method="POST").respond_with_handler(found.handle)
    server.start()
    yield found
    if server.is_running():
        server.clear()
        server.stop()


def config_text(receiver: Receiver, **settings: str) -> str:
    lines = ["webhooks:", "  endpoints:",
             f"    main: {{url: \"{receiver.url()}\", secret_env: PLAUDIT_TEST_SECRET}}"]
    if "other" in settings:
        lines.append(f"    other: {{url: \"{receiver.url('/other')}\", secret_env: "
                     f"PLAUDIT_TEST_SECRET, badges: [{settings.pop('other')}]}}")
    retry = settings.pop("retry", "{first: 50ms, max: 200ms, give_up_after: 1 hour}")
    lines += [f"  {key}: {value}" for key, value in
              {"timeout": "2s", "coalesce": "0s", **settings}.items()]
    lines.append(f"  retry: {retry}")
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("PLAUDIT_TEST_SECRET", SECRET)


@pytest.fixture
def hooked(project, deployed, receiver):
    """hooked(**settings) -> engine: TALKER and POSTER deployed, webhooks to the receiver."""

    def make(**settings: str):
        project.write("plaudit.yaml", config_text(receiver, **settings))
        return deployed(TALKER, POSTER)

    return make


def now():
    return datetime.now(UTC).replace(microsecond=0)


def levels(sql):
    """{(badge, level): position}: what "highest level first" is measured by."""
    return {(b, k): p for b, k, p in sql("SELECT badge, key, position FROM plaudit.badge_level")}


def unseen(sql):
    return sql("SELECT user_id, badge, level FROM plaudit.user_badge WHERE seen_at IS NULL "
               "ORDER BY 1, 2, 3")


def test_a_message_is_a_users_grants_highest_level_first_signed(hooked, receiver, sql, run_cli,
                                                                 project):
    engine = hooked()
    seed(sql, comments=[(7, now())] * 3 + [(8, now())], posts=[(7, now())])
    run_batch(engine, 100)
    result = run_cli(project, "deliver")
    assert result.exit_code == 0, result.stderr
    assert len(receiver.requests) == 2
    by_user = {r["body"]["user_id"]: r for r in receiver.requests}
    ids = dict(sql("SELECT user_id || ':' || badge || ':' || level, notice_id::text "
                   "FROM plaudit.outbox"))
    seven = by_user[7]["body"]
    assert [(g["badge"], g["level"]) for g in seven["grants"]] == [
        ("talker", "gold"), ("talker", "silver"), ("talker", "bronze"), ("poster", "first")]
    assert [g["id"] for g in seven["grants"]] == [
        ids[f"7:{g['badge']}:{g['level']}"] for g in seven["grants"]]
    assert seven["grants"][0] == {
        "id": ids["7:talker:gold"], "user_id": 7, "badge": "talker", "level": "gold",
        "name": "Orator", "points": 20, "achieved_at": seven["grants"][0]["achieved_at"]}
    assert (seven["revokes"], seven["webhook"]) == ([], "main")
    assert all(r["signed"] for r in receiver.requests)
    assert all(r["message_id"] == r["body"]["message_id"] for r in receiver.requests)
    # stdout: a line per message; the database: delivered, by that message
    assert sorted(line.split("\t")[:4] for line in result.stdout.splitlines()) == [
        ["main", "7", "4 grants", "delivered"], ["main", "8", "1 grant", "delivered"]]
    assert sql("SELECT DISTINCT d.status, d.message_id::text FROM plaudit.delivery AS d "
               "WHERE d.user_id = 7") == [("delivered", seven["message_id"])]
    assert run_cli(project, "deliver").stderr == "nothing due\n"
    assert len(receiver.requests) == 2


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"a": 1}'
    timestamp = int(time.time())
    header = signature(b"k", timestamp, body)
    assert header == "t={},v1={}".format(
        timestamp, hmac.new(b"k", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest())
    assert verify(b"k", header, body) and readme_verify(b"k", header, body)
    assert not verify(b"k", header, body + b" ") and not verify(b"other", header, body)
    old = signature(b"k", timestamp - 600, body)
    assert not verify(b"k", old, body) and not readme_verify(b"k", old, body)


def test_a_users_grants_within_the_window_go_in_one_message(hooked, receiver, sql, run_cli,
                                                            project):
    engine = hooked(coalesce="1500ms")
    seed(sql, comments=[(7, now())])
    run_batch(engine, 100)
    seed(sql, comments=[(7, now())])
    run_batch(engine, 100)  # a second transaction, within the window
    assert run_cli(project, "deliver").stderr == "nothing due\n"
    time.sleep(1.6)
    assert run_cli(project, "deliver").exit_code == 0
    [message] = receiver.accepted()
    assert [g["level"] for g in message["grants"]] == ["silver", "bronze"]


def test_failures_back_off_then_die_and_retry_dead_resends(hooked, receiver, sql, run_cli,
                                                           project):
    engine = hooked(other="talker", retry="{first: 100ms, max: 400ms, give_up_after: 1 hour}")
    receiver.answer = lambda n, path: (500, 0.0)
    seed(sql, comments=[(7, now())])
    run_batch(engine, 100)
    started = datetime.now(UTC)
    result = run_cli(project, "deliver")
    assert result.exit_code == 0  # failures are retried later: not an error yet
    rows = sql("SELECT webhook, status, attempts, last_error, due_at FROM plaudit.delivery "
               "ORDER BY 1")
    assert [r[:4] for r in rows] == [("main", "pending", 1, "HTTP 500"),
                                     ("other", "pending", 1, "HTTP 500")]
    for row in rows:  # the first backoff: 100ms, half of it random
        assert started + timedelta(milliseconds=50) <= row[4]
        assert row[4] <= datetime.now(UTC) + timedelta(milliseconds=100)
    time.sleep(0.2)
    run_cli(project, "deliver")
    assert [r[0] for r in sql("SELECT attempts FROM plaudit.delivery")] == [2, 2]
    # tried for longer than give_up_after: the next failure makes a dead letter
    sql("UPDATE plaudit.delivery SET queued_at = now() - interval '2 hours', due_at = now()")
    result = run_cli(project, "deliver")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "Error: 2 notices became dead letters: delivery gave up on them; "
        "`plaudit deliver --retry-dead` sends them again\n")
    assert sql("SELECT status, attempts FROM plaudit.delivery") == [("dead", 3), ("dead", 3)]
    assert run_cli(project, "status").exit_code == 1
    # the endpoint is fixed; only the dead letters of the endpoint named are sent again
    receiver.answer = None
    result = run_cli(project, "deliver", "--retry-dead", "--webhook", receiver.url("/other"))
    assert result.exit_code == 0, result.stderr
    assert "1 dead letter to send again" in result.stderr
    assert sql("SELECT webhook, status FROM plaudit.delivery ORDER BY 1") == [
        ("main", "dead"), ("other", "delivered")]
    assert [m["webhook"] for m in receiver.accepted()] == ["other"]


def test_one_endpoint_down_neither_blocks_nor_duplicates_the_other(hooked, receiver, sql,
                                                                   run_cli, project):
    engine = hooked(other="talker")
    receiver.answer = lambda n, path: (503 if path == "/other" else 200, 0.0)
    for round_ in range(3):
        seed(sql, comments=[(7, now())])
        run_batch(engine, 100)
        sql("UPDATE plaudit.delivery SET due_at = now() WHERE status = 'pending'")
        assert run_cli(project, "deliver").exit_code == 0
        assert len(receiver.accepted("/hook")) == round_ + 1
    ids = [g["id"] for m in receiver.accepted("/hook") for g in m["grants"]]
    assert len(ids) == len(set(ids)) == 3
    assert sql("SELECT webhook, status, count(*) FROM plaudit.delivery GROUP BY 1, 2 "
               "ORDER BY 1") == [("main", "delivered", 3), ("other", "pending", 3)]


def test_a_timeout_is_a_failure_to_retry(hooked, receiver, sql, run_cli, project):
    engine = hooked(timeout="300ms")
    receiver.answer = lambda n, path: (200, 1.0 if n == 0 else 0.0)
    seed(sql, comments=[(7, now())])
    run_batch(engine, 100)
    result = run_cli(project, "deliver")
    assert result.stdout.split("\t")[3] == "failed: timed out after 0.3s"
    assert sql("SELECT status, last_error FROM plaudit.delivery") == [
        ("pending", "timed out after 0.3s")]
    time.sleep(1.0)
    assert run_cli(project, "deliver").exit_code == 0
    # the receiver took it twice (it finished the first after the sender gave up): the same
    # notice id both times, which is what it deduplicates on
    first, second = receiver.accepted()
    assert first["grants"] == second["grants"]
    assert sql("SELECT status FROM plaudit.delivery") == [("delivered",)]


def test_the_rate_limit_folds_the_rest_into_the_next_message(hooked, receiver, sql, run_cli,
                                                              project):
    engine = hooked(max_per_hour="2")
    for _ in range(3):
        seed(sql, comments=[(7, now())])
        run_batch(engine, 100)
        run_cli(project, "deliver")
    assert [[g["level"] for g in m["grants"]] for m in receiver.accepted()] == [
        ["bronze"], ["silver"]]
    # the third waits until the first message is an hour old
    [(wait,)] = sql("SELECT d.due_at - min(s.delivered_at) FROM plaudit.delivery AS d, "
                    "plaudit.delivery AS s WHERE d.status = 'pending' AND s.status = "
                    "'delivered' GROUP BY d.due_at")
    assert wait == timedelta(hours=1)
    seed(sql, posts=[(7, now())])
    run_batch(engine, 100)
    assert run_cli(project, "deliver").stderr == "nothing due\n"
    sql("UPDATE plaudit.delivery SET delivered_at = delivered_at - interval '1 hour', "
        "due_at = due_at - interval '1 hour'")
    run_cli(project, "deliver")
    assert [[g["level"] for g in m["grants"]] for m in receiver.accepted()][2] == [
        "gold", "first"]


def test_deliver_says_what_is_missing(project, deployed, receiver, run_cli, monkeypatch):
    deployed(TALKER)
    result = run_cli(project, "deliver")
    assert (result.exit_code, result.stderr) == (2, (
        "Error: plaudit.yaml configures no webhooks: add a webhooks: section with its "
        "endpoints (docs/configuration.md, Webhooks), then run `plaudit deploy`\n"))
    project.write("plaudit.yaml", config_text(receiver))
    result = run_cli(project, "deliver")
    assert (result.exit_code, result.stderr) == (2, (
        "Error: plaudit.yaml's webhooks differ from the deployed ones (main): run "
        "`plaudit deploy`\n"))
    assert run_cli(project, "deploy").exit_code == 0
    result = run_cli(project, "deliver", "--webhook", "http://127.0.0.1:1/x")
    assert result.exit_code == 2 and "--webhook http://127.0.0.1:1/x: no endpoint" in (
        result.stderr)
    monkeypatch.delenv("PLAUDIT_TEST_SECRET")
    result = run_cli(project, "deliver")
    assert (result.exit_code, result.stderr) == (2, (
        "Error: plaudit.yaml:3: webhook main: the environment variable PLAUDIT_TEST_SECRET "
        "holding its secret is not set\n"))


def test_schedule_says_pg_cron_does_not_deliver_webhooks(hooked, run_cli, project):
    hooked()
    # a pg_cron database that cannot be reached: the note comes first, then the error
    result = run_cli(project, "schedule", "--cron-dsn", "postgresql://127.0.0.1:1/none")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "webhooks: no pg_cron job delivers them (this server has no pg_net, so PostgreSQL "
        "cannot send HTTP): run `plaudit deliver --follow` as a service (systemd), or from "
        f"cron:\n  * * * * *  cd {project.path} && plaudit deliver\n")


# -- at least once, whatever happens --------------------------------------------------------


def grants_in_rounds(engine, sql, rng, users, rounds):
    """Comments and posts by random users, a batch of events per round: grants of every level,
    several per user and message."""
    for _ in range(rounds):
        picked = rng.sample(users, k=len(users) // 2)
        seed(sql, comments=[(u, now()) for u in picked for _ in range(rng.randint(1, 2))],
             posts=[(u, now()) for u in picked if rng.random() < 0.3])
        run_batch(engine, 10_000)


def check_received_exactly_once_after_dedup(receiver, sql):
    """What a receiver deduplicating on the notice id has: each announced grant once."""
    positions = levels(sql)
    seen: dict[str, tuple[Any, ...]] = {}
    for message in receiver.accepted():
        keys = [(message["user_id"], g["badge"], g["level"]) for g in message["grants"]]
        ranks = [positions[(b, lv)] for _, b, lv in keys]
        assert ranks == sorted(ranks, reverse=True)  # highest level first
        assert {g["user_id"] for g in message["grants"]} == {message["user_id"]}
        for grant, key in zip(message["grants"], keys, strict=True):
            assert seen.setdefault(grant["id"], key) == key  # one id, one grant
    assert sorted(seen.values()) == unseen(sql)  # none missing, none extra
    assert sorted(seen) == sorted(r[0] for r in sql("SELECT notice_id::text FROM plaudit.outbox"))
    assert all(r["signed"] for r in receiver.requests)


def test_failures_timeouts_and_a_receiver_going_down_lose_nothing(hooked, receiver, sql,
                                                                  engine_for, project):
    rng = random.Random(17)
    engine = hooked(timeout="300ms", retry="{first: 20ms, max: 200ms, give_up_after: 1 hour}")
    faults = random.Random(1717)
    receiver.answer = lambda n, path: faults.choices(
        [(200, 0.0), (500, 0.0), (502, 0.0), (200, 0.5)], weights=[6, 2, 1, 1])[0]
    grants_in_rounds(engine, sql, rng, list(range(100, 130)), rounds=4)
    assert len(unseen(sql)) > 40
    config = load_config(project.path)
    deliverer = Deliverer(engine_for(project), config.webhooks,
                          select_endpoints(config.webhooks, ()), batch_size=7)
    deadline = time.monotonic() + 60
    downs = 0
    try:
        while sql("SELECT count(*) FROM plaudit.delivery WHERE status <> 'delivered'") != [(0,)]:
            assert time.monotonic() < deadline, "the outbox did not drain"
            if rng.random() < 0.15 and receiver.server.is_running():
                receiver.server.stop()  # down: connections refused
                downs += 1
            elif not receiver.server.is_running() and rng.random() < 0.5:
                receiver.server.start()
            deliverer.drain()
            time.sleep(0.05)
    finally:
        deliverer.close()
        if not receiver.server.is_running():
            receiver.server.start()
    # the faults happened: errors, answers after the timeout, the receiver down
    assert {200, 500, 502} <= {r["status"] for r in receiver.requests}
    assert any(r["delay"] > 0 for r in receiver.requests) and downs > 0
    assert sql("SELECT max(attempts) > 1 FROM plaudit.delivery") == [(True,)]
    check_received_exactly_once_after_dedup(receiver, sql)


def test_deliverers_running_at_once_take_disjoint_messages(hooked, receiver, sql, engine_for,
                                                           project):
    engine = hooked()
    receiver.answer = lambda n, path: (200, 0.1)
    grants_in_rounds(engine, sql, random.Random(5), list(range(300, 340)), rounds=1)
    config = load_config(project.path)
    deliverers = [Deliverer(engine_for(project), config.webhooks,
                            select_endpoints(config.webhooks, ()), batch_size=3)
                  for _ in range(3)]
    sent: list[list[str]] = [[] for _ in deliverers]

    def drain(index: int) -> None:
        deliverers[index].on_batch = lambda result: sent[index].extend(
            o.message.message_id for o in result.outcomes)
        deliverers[index].drain()

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(deliverers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for deliverer in deliverers:
        deliverer.close()
    assert all(sent)  # each took its share
    messages = [m for batch in sent for m in batch]
    assert len(messages) == len(set(messages)) == len(receiver.requests)  # none twice
    assert sql("SELECT count(*) FROM plaudit.delivery WHERE status <> 'delivered'") == [(0,)]
    # a user's notices were never split between two deliverers: one message per user
    assert len({m["user_id"] for m in receiver.accepted()}) == len(receiver.accepted())
    check_received_exactly_once_after_dedup(receiver, sql)


def deliver_process(dsn: str, project, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-c", "from plaudit.cli import main; main()", "--dsn", dsn,
         "--project", str(project.path), "deliver", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_deliverer_killed_mid_batch_loses_nothing(hooked, receiver, sql, dsn, project):
    rng = random.Random(9)
    engine = hooked()
    receiver.answer = lambda n, path: (200, 0.5)  # slow: a batch takes a while
    grants_in_rounds(engine, sql, rng, list(range(200, 240)), rounds=2)
    total = len(unseen(sql))
    process = deliver_process(dsn, project, "--follow", "--batch-size", "10")
    try:
        deadline = time.monotonic() + 30
        while len(receiver.requests) < 3:  # the first batch is being sent
            assert time.monotonic() < deadline and process.poll() is None, process.stderr
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    # the batch rolled back: nothing it sent counts as delivered, nothing is lost
    assert sql("SELECT status, count(*) FROM plaudit.delivery GROUP BY 1") == [
        ("pending", total)]
    assert sql("SELECT count(*) FROM plaudit.outbox") == [(total,)]
    receiver.answer = None
    again = deliver_process(dsn, project, "--follow", "--batch-size", "10")
    try:
        deadline = time.monotonic() + 30
        while sql("SELECT count(*) FROM plaudit.delivery WHERE status <> 'delivered'") != [(0,)]:
            assert time.monotonic() < deadline and again.poll() is None
            time.sleep(0.1)
    finally:
        if again.poll() is None:
            again.send_signal(signal.SIGTERM)
        _, err = again.communicate(timeout=10)
    assert again.returncode == 0, err
    assert "stopped" in err
    check_received_exactly_once_after_dedup(receiver, sql)
    # the killed batch's messages were sent again: a receiver sees those twice
    assert len(receiver.accepted()) > len({m["message_id"] for m in receiver.accepted()})
