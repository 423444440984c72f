"""math-verify in a separate, killable process: a timeout that holds even when sympy holds the GIL.

A thread cannot stop a computation. ``9^{9^{9}}`` makes sympy multiply a 370-million-digit integer inside one C
call that never releases the GIL, so a timeout waited for in another thread of the same process does not even
return, and the stuck thread keeps burning CPU and memory until the process exits. Here the checks run in a child
process instead:

* a *server* (``python -m sasc_ttrl.core.verify_process``, a fresh interpreter: nothing of the caller's CUDA state or
  threads) imports math-verify once and forks a *worker* that answers checks one at a time;
* the server waits for each answer with ``select`` and ``SIGKILL``s the worker when the check overruns its timeout,
  then forks a fresh one from its already-initialised memory (milliseconds, no re-import);
* a worker that dies instead (killed from outside, out of memory) is replaced by a fresh fork that does the same
  check once more, so a lost worker never turns into a verdict: the check's answer is what a rerun gives;
  only a check that kills its second worker too is reported as failed;
* the caller talks to the server through pipes (no signals, so any thread may call) and keeps a backstop timeout of
  its own: a server that stops answering is killed and restarted on the next check; a server that died is restarted
  at once and asked again.

Requests are one ASCII JSON line ``[gold, pred, timeout]`` (or ``null``: replace the worker, dropping its caches);
replies are ``1`` (equivalent), ``0`` (not), ``T`` (timed out) or ``E`` (the worker died, and so did its
replacement). [`verify`] is the caller's side; `answers.is_equivalent` uses it. The worker runs
`math_equivalence._safe_verify`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 120.0  # importing sympy on a loaded machine; not charged to any check
BACKSTOP_SECONDS = 10.0  # extra time the caller allows the server (which enforces the check's own timeout)
_REPLIES = {b"1": True, b"0": False}
_EOF = b"end of file"  # what `_read_line` returns at end of file when asked to tell it from a timeout


def _read_line(fd: int, buffer: bytearray, timeout: float | None, eof: bytes | None = None) -> bytes | None:
    """One ``\\n``-terminated line from ``fd`` (without the newline); None on timeout, ``eof`` at end of file."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while b"\n" not in buffer:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return eof
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- the server and its worker (run in the child interpreter) ---------------------------------------------------------
def _worker_loop(requests: int, replies: int) -> None:
    """Answer checks until the request pipe closes. Runs in a forked worker; never returns."""
    from . import math_equivalence

    buffer = bytearray()
    while (line := _read_line(requests, buffer, None)) is not None:
        gold, pred = json.loads(line)[:2]
        _write_all(replies, b"1\n" if math_equivalence._safe_verify(gold, pred) else b"0\n")
    os._exit(0)


class _Worker:
    """A forked worker and the pipes to it."""

    def __init__(self):
        req_r, self.requests = os.pipe()
        self.replies, rep_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the worker: keep only its two pipe ends
            os.close(self.requests)
            os.close(self.replies)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            try:
                _worker_loop(req_r, rep_w)
            finally:
                os._exit(1)
        os.close(req_r)
        os.close(rep_w)
        self.buffer = bytearray()

    def ask(self, line: bytes, timeout: float) -> bytes:
        try:
            _write_all(self.requests, line)
        except OSError:  # the worker is gone
            return b"E"
        # End of file: the worker died (its pipe closes before it can be reaped, so waitpid cannot tell yet).
        reply = _read_line(self.replies, self.buffer, timeout, eof=b"E")
        return b"T" if reply is None else reply if reply in _REPLIES else b"E"

    def kill(self) -> None:
        for fd in (self.requests, self.replies):
            os.close(fd)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def serve() -> None:
    """The server loop: read requests on stdin, answer on stdout, kill and re-fork the worker on a timeout."""
    from .math_equivalence import _safe_verify, clear_caches

    # Import and initialise math-verify's parsers once, here: every forked worker inherits them ready to use.
    _safe_verify("\\frac{\\sqrt{2}}{2}", "\\{x^{2} + 1, 0.5\\%\\}")
    clear_caches()

    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer.fileno()
    worker = _Worker()
    _write_all(stdout, b"ready\n")
    buffer = bytearray()
    while (line := _read_line(stdin, buffer, None)) is not None:
        request = json.loads(line)
        if request is None:  # forget the worker's caches: a fresh fork of the (cache-free) server
            if worker is not None:
                worker.kill()
            worker = None
            _write_all(stdout, b"0\n")
            continue
        if worker is None:
            worker = _Worker()
        timeout = float(request[2])
        reply = worker.ask(line + b"\n", timeout)
        if reply == b"E":  # the worker died (killed, out of memory): a fresh fork does the check once more
            dead = worker.pid
            worker.kill()
            worker = _Worker()
            sys.stderr.write(
                f"sasc_ttrl.core.verify_process: the math-verify worker (pid {dead}) died; "
                f"check retried in a new worker (pid {worker.pid})\n"
            )
            sys.stderr.flush()
            reply = worker.ask(line + b"\n", timeout)
        if reply not in _REPLIES:
            worker.kill()
            worker = None
        _write_all(stdout, reply + b"\n")
    if worker is not None:
        worker.kill()


# -- the caller's side ------------------------------------------------------------------------------------------------
class _Client:
    """The caller's connection to one server, restarted when it dies; one check at a time (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.owner = -1
        self.buffer = bytearray()

    def _start(self) -> subprocess.Popen:
        package_root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen(
            [sys.executable, "-m", "sasc_ttrl.core.verify_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self.buffer = bytearray()
        if _read_line(process.stdout.fileno(), self.buffer, STARTUP_TIMEOUT_SECONDS) != b"ready":
            process.kill()
            process.wait()
            raise RuntimeError(
                f"the math-verify process ({sys.executable} -m sasc_ttrl.core.verify_process) did not start"
            )
        self.process, self.owner = process, os.getpid()
        return process

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and self.owner == os.getpid():
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                stream.close()

    def verify(self, gold: str, pred: str, timeout: float) -> bool | None:
        request = json.dumps([gold, pred, timeout], ensure_ascii=True).encode("ascii") + b"\n"
        with self.lock:
            for _ in range(2):  # a server found dead is replaced and asked once more
                process = self.process
                if process is None or self.owner != os.getpid() or process.poll() is not None:
                    self.stop()  # a server inherited through fork belongs to the parent: only forgotten
                    process = self._start()
                try:
                    process.stdin.write(request)
                    process.stdin.flush()
                except BrokenPipeError:
                    self.stop()
                    continue
                # The server may spend the timeout twice: on a worker that dies, then on its replacement.
                reply = _read_line(process.stdout.fileno(), self.buffer, 2 * timeout + BACKSTOP_SECONDS, eof=_EOF)
                if reply == _EOF:
                    self.stop()
                    continue
                if reply is None:  # the server is stuck: start a new one next time
                    self.stop()
                return _REPLIES.get(reply)
            return None


_client = _Client()
atexit.register(_client.stop)


def verify(gold: str, pred: str, timeout: float) -> bool | None:
    """Whether math-verify finds ``pred`` equivalent to ``gold``, checked in a separate process.

    Args:
        gold: Reference side of the check.
        pred: Answer checked against it.
        timeout: Seconds the check may take; the worker doing it is killed after that.

    Returns:
        ``True`` / ``False``, or ``None`` when the check timed out or two workers in a row died doing it (the caller
        decides what that means; `answers.is_equivalent` counts it as not equivalent).
    """
    return _client.verify(gold, pred, timeout)


def clear_cache() -> None:
    """Replace the worker by a fresh fork of the server, which holds no parse or verdict (no-op without a server)."""
    with _client.lock:
        process = _client.process
        if process is None or _client.owner != os.getpid() or process.poll() is not None:
            return
        process.stdin.write(b"null\n")
        process.stdin.flush()
        if _read_line(process.stdout.fileno(), _client.buffer, BACKSTOP_SECONDS) is None:
            _client.stop()


if __name__ == "__main__":
    serve()
