"""A math-verify worker or server that dies mid-check is replaced and the check is done again.

The verdict after a kill must be the one a rerun gives: a lost worker must never turn into "not equivalent". The
check used takes about a second of sympy (expanding a degree-30 polynomial both ways) and is equivalent, so a kill
that were answered "not equivalent" would show. Kills land while the worker is computing: the test waits until the
worker has used CPU time on the check.
"""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from sasc_ttrl.core import answers, verify_process

GOLD = "(x+1)^{30}-1"
PRED = "x(" + "+".join(f"(x+1)^{{{k}}}" for k in range(29, 0, -1)) + "+1)"  # the same polynomial, as a geometric sum
TIMEOUT = 60.0


def server() -> psutil.Process:
    process = verify_process._client.process
    assert process is not None and process.poll() is None
    return psutil.Process(process.pid)


def worker_of(server_process: psutil.Process, limit: float = 30.0) -> psutil.Process:
    """The server's one live worker (waiting out a replacement being forked)."""
    deadline = time.monotonic() + limit
    while True:
        live = [p for p in server_process.children() if p.status() != psutil.STATUS_ZOMBIE]
        if len(live) == 1:
            return live[0]
        assert time.monotonic() < deadline, f"the server has {len(live)} live workers"
        time.sleep(0.01)


def busy(process: psutil.Process, cpu_seconds: float = 0.15, limit: float = 60.0) -> None:
    """Wait until ``process`` has spent ``cpu_seconds`` of CPU since this call (it is in the middle of a check)."""
    times = process.cpu_times()
    start = times.user + times.system
    deadline = time.monotonic() + limit
    while True:
        times = process.cpu_times()
        if times.user + times.system - start >= cpu_seconds:
            return
        assert time.monotonic() < deadline, "the check never started"
        time.sleep(0.01)


def check_in_thread() -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target():
        result["verdict"] = verify_process.verify(GOLD, PRED, TIMEOUT)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


@pytest.fixture(autouse=True)
def fresh_worker():
    """A running server with a worker that holds no verdict on the check (so the check below really runs)."""
    assert answers.is_equivalent("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", timeout=TIMEOUT)
    answers.clear_caches()  # the server drops its worker; the next check forks a fresh one
    assert verify_process.verify("1", "x", TIMEOUT) is False
    yield
    answers.clear_caches()


def test_the_check_is_equivalent_and_slow_enough():
    """Control: without a kill, the check is True and keeps the worker busy for a while."""
    start = time.perf_counter()
    assert verify_process.verify(GOLD, PRED, TIMEOUT) is True
    assert time.perf_counter() - start > 0.3


def test_worker_killed_mid_check_is_replaced_and_the_check_rerun(capfd):
    verify_process._client.stop()  # a server started now writes its stderr where capfd reads
    assert verify_process.verify("1", "x", TIMEOUT) is False
    server_process = server()
    worker = worker_of(server_process)
    thread, result = check_in_thread()
    busy(worker)
    worker.kill()
    thread.join(TIMEOUT)
    assert result["verdict"] is True  # the rerun's verdict, not "not equivalent"
    replacement = worker_of(server_process)
    assert replacement.pid != worker.pid and not worker.is_running()
    assert server().pid == server_process.pid  # only the worker was replaced
    assert f"math-verify worker (pid {worker.pid}) died; check retried" in capfd.readouterr().err


def test_worker_killed_between_checks_is_replaced():
    server_process = server()
    worker = worker_of(server_process)
    worker.kill()
    deadline = time.monotonic() + 30
    while worker.status() != psutil.STATUS_ZOMBIE:  # dead; the server reaps it at its next check
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert verify_process.verify(GOLD, PRED, TIMEOUT) is True
    assert worker_of(server_process).pid != worker.pid


def test_a_check_that_loses_two_workers_has_no_verdict():
    """One retry only: a check whose replacement dies too (an input that kills workers) is reported as failed."""
    server_process = server()
    thread, result = check_in_thread()
    for _ in range(2):
        worker = worker_of(server_process)
        busy(worker)
        worker.kill()
        deadline = time.monotonic() + 30
        while worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    thread.join(TIMEOUT)
    assert result["verdict"] is None
    assert verify_process.verify(GOLD, PRED, TIMEOUT) is True  # the next check gets a working worker


def test_server_killed_mid_check_is_restarted_and_asked_again():
    server_process = server()
    thread, result = check_in_thread()
    busy(worker_of(server_process))
    server_process.kill()
    thread.join(TIMEOUT)
    assert result["verdict"] is True
    assert server().pid != server_process.pid
