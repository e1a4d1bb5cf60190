"""The refit worker process: ``python -m streamgmm.detect.refit_worker FD``.

A refit on a thread shares the interpreter lock with ``process``; on a process
of its own it costs the stream only the hand-over of the window. The worker is
started as a module of its own over one end of a socket pair (``FD``), not by
multiprocessing's ``spawn``, so it never imports the caller's main module (a
script needs no ``if __name__ == "__main__":`` guard, a notebook works), and
nothing that crosses is pickled: a job and its result are a JSON header and
raw numeric arrays (see ``send_message``).

The worker runs one job at a time and exits when the detector closes its end
of the socket, or dies with it: a detector that is killed leaves no worker
behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import site
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from streamgmm.detect.groups import GroupRule
from streamgmm.model.em import MixtureParams
from streamgmm.model.gmm import GaussianMixture
from streamgmm.model.io import FIT_SCALARS

log = logging.getLogger("streamgmm.detect.refit")


class WorkerDied(RuntimeError):
    """The worker process is gone (killed, out of memory, failed to start)."""


# -- the wire: a JSON header, then each array's raw bytes ---------------------
# A message is a list of frames: the header names each array's dtype and shape,
# and the arrays follow as plain bytes. Only numeric dtypes are read, so nothing
# received can run code, and nothing is copied into an archive on the way out.
NUMERIC_KINDS = "biuf"


def send_message(conn: Connection, meta: dict, **arrays) -> None:
    """Send ``meta`` (JSON-able) and ``arrays`` (numeric numpy arrays; None skipped)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}
    for name, arr in arrays.items():
        if arr.dtype.kind not in NUMERIC_KINDS:
            raise TypeError(f"{name}: only numeric arrays cross to the worker, got {arr.dtype}")
    specs = [[name, arr.dtype.str, list(arr.shape)] for name, arr in arrays.items()]
    conn.send_bytes(json.dumps({"meta": meta, "arrays": specs}).encode())
    for arr in arrays.values():
        conn.send_bytes(memoryview(arr).cast("B") if arr.size else b"")


def recv_message(conn: Connection) -> tuple[dict, dict[str, np.ndarray]]:
    """The inverse of ``send_message``."""
    head = json.loads(conn.recv_bytes().decode())
    arrays = {}
    for name, dtype, shape in head["arrays"]:
        dt = np.dtype(dtype)
        if dt.kind not in NUMERIC_KINDS:
            raise ValueError(f"{name}: refusing a non-numeric array of dtype {dt}")
        arrays[name] = np.frombuffer(conn.recv_bytes(), dtype=dt).reshape(shape).copy()
    return head["meta"], arrays


def job_message(job: tuple | None) -> tuple[dict, dict]:
    """A ping (None) or the arguments of ``refit.run_refit``, as (meta, arrays)."""
    if job is None:
        return {"kind": "ping"}, {}
    settings, X, preq, current, seq, seed, keep, rule = job
    meta = {
        "kind": "refit", "n_init": settings.n_init,
        "holdout_fraction": settings.holdout_fraction,
        "k_range": list(settings.k_range), "min_gain": settings.min_gain,
        "covariance_type": current.covariance_type, "seq": int(seq), "seed": int(seed),
        "rule": None if rule is None else [float(rule.typical), float(rule.ratio)],
    }
    return meta, dict(reg_covar=np.asarray(settings.reg_covar, dtype=np.float64), X=X,
                      preq=preq, weights=current.weights, means=current.means,
                      covariances=current.covariances,
                      precisions_cholesky=current.precisions_cholesky, keep=keep,
                      rule_shift=None if rule is None else rule.shift)


def job_from_message(meta: dict, a: dict[str, np.ndarray]) -> tuple | None:
    """The inverse of ``job_message``."""
    from streamgmm.detect.refit import RefitSettings

    if meta["kind"] == "ping":
        return None
    reg_covar = a["reg_covar"]
    reg_covar = float(reg_covar) if reg_covar.ndim == 0 else reg_covar
    settings = RefitSettings(meta["n_init"], reg_covar, meta["holdout_fraction"],
                             tuple(meta["k_range"]), meta["min_gain"])
    current = MixtureParams(meta["covariance_type"], a["weights"], a["means"],
                            a["covariances"], a["precisions_cholesky"])
    rule = None if meta["rule"] is None else GroupRule(*meta["rule"], a["rule_shift"])
    return (settings, a["X"], a["preq"], current, meta["seq"], meta["seed"],
            a.get("keep"), rule)


def result_message(result) -> tuple[dict, dict]:
    """A ``refit.RefitResult`` as (meta, arrays), its model as plain arrays."""
    meta = {"outcome": result.outcome, "seconds": result.seconds,
            "snapshot_seq": int(result.snapshot_seq),
            "candidate_score": result.candidate_score, "current_score": result.current_score,
            "error": result.error, "model": None}
    arrays = {"taken_back": np.asarray(result.taken_back, dtype=np.int64)}
    m = result.model
    if m is not None:
        meta["model"] = {"covariance_type": m.covariance_type,
                         "scalars": {k: getattr(m, k).item() if hasattr(getattr(m, k), "item")
                                     else getattr(m, k) for k in FIT_SCALARS if hasattr(m, k)}}
        arrays.update(weights=m.weights_, means=m.means_, covariances=m.covariances_,
                      precisions_cholesky=m.precisions_cholesky_,
                      reg_covar=np.asarray(m.reg_covar, dtype=np.float64))
    return meta, arrays


def result_from_message(meta: dict, a: dict[str, np.ndarray]):
    """The inverse of ``result_message``: a RefitResult with a fitted GaussianMixture."""
    from streamgmm.detect.refit import RefitResult

    model = None
    if meta["model"] is not None:
        spec = meta["model"]
        reg_covar = a["reg_covar"]
        model = GaussianMixture(a["weights"].shape[0], covariance_type=spec["covariance_type"],
                                reg_covar=float(reg_covar) if reg_covar.ndim == 0 else reg_covar)
        model._set_params(MixtureParams(spec["covariance_type"], a["weights"], a["means"],
                                        a["covariances"], a["precisions_cholesky"]))
        for name, value in spec["scalars"].items():
            setattr(model, name, value)
    return RefitResult(meta["outcome"], meta["seconds"], meta["snapshot_seq"], model,
                       meta["candidate_score"], meta["current_score"], meta["error"],
                       taken_back=a["taken_back"])


# -- the detector's side -----------------------------------------------------
class PendingJob:
    """The job a worker runs: ``done()`` and ``result(timeout)``, as a
    ``concurrent.futures.Future`` has them.

    The job is sent from a thread of its own, so the caller never waits for the
    hand-over of the window (nor hangs on a worker that stopped reading).
    """

    def __init__(self, worker: WorkerProcess, ping: bool, meta: dict, arrays: dict):
        self._worker = worker
        self._ping = ping
        self._lock = threading.Lock()
        self._finished = False
        self._value = None
        self._error: BaseException | None = None
        self._send_error: BaseException | None = None
        self._sender = threading.Thread(target=self._send, args=(meta, arrays),
                                        name="streamgmm-refit-send", daemon=True)
        self._sender.start()

    def _send(self, meta: dict, arrays: dict) -> None:
        try:
            send_message(self._worker.conn, meta, **arrays)
        except Exception as exc:  # the worker is gone, or the detector closed
            self._send_error = exc

    def _died(self, exc: BaseException) -> None:
        self._error = WorkerDied(f"refit worker process {self._worker.pid} exited "
                                 f"({self._worker.exit_reason(1.0)})")
        self._error.__cause__ = exc

    def _read_if_ready(self, timeout: float) -> bool:
        with self._lock:
            if self._finished:
                return True
            if self._send_error is not None:
                self._died(self._send_error)
                self._finished = True
            elif self._worker.conn.poll(timeout):
                try:
                    meta, arrays = recv_message(self._worker.conn)
                    self._value = True if self._ping else result_from_message(meta, arrays)
                except (EOFError, OSError) as exc:
                    self._died(exc)
                except Exception as exc:  # a reply that does not decode
                    self._error = exc
                self._finished = True
            return self._finished

    def done(self) -> bool:
        return self._finished or self._read_if_ready(0.0)

    def result(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._read_if_ready(0.0):
            # Wait without the lock, so that done() from another thread never
            # waits for the refit, and in slices, so that a job that could not
            # be sent is seen.
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise FutureTimeout()
            self._worker.conn.poll(0.1 if left is None else min(0.1, left))
        if self._error is not None:
            raise self._error
        return self._value


def _worker_env() -> dict[str, str]:
    """The caller's environment, with the directory streamgmm was imported from
    first on PYTHONPATH unless it is a site directory the interpreter reads
    anyway (a source checkout run without installing; a site directory put
    before the standard library could shadow it)."""
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[2]
    sites = site.getsitepackages() + [site.getusersitepackages()]
    if not any(Path(p).resolve() == root for p in sites if p):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    return env


def _stop(proc: subprocess.Popen, conn: Connection, kill: bool) -> None:
    with contextlib.suppress(OSError):
        conn.close()
    if kill and proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=2.0)  # an idle worker exits on the closed socket at once
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class WorkerProcess:
    """One worker process and the detector's end of its socket pair."""

    def __init__(self):
        ours, theirs = Pipe(duplex=True)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamgmm.detect.refit_worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=_worker_env())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = ours
        self.pid = self.proc.pid
        self._pending: PendingJob | None = None
        # A detector dropped without close() (or the interpreter exiting) still
        # stops its worker.
        self._finalizer = weakref.finalize(self, _stop, self.proc, self.conn, True)

    def exit_reason(self, wait: float = 0.0) -> str:
        """How the worker ended (``wait`` seconds for it to be reaped)."""
        try:
            code = self.proc.wait(timeout=wait) if wait else self.proc.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return "connection lost"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def submit(self, job: tuple | None) -> PendingJob:
        """Send a ping (None) or a refit's arguments; raises WorkerDied if the
        worker is gone."""
        if self.proc.poll() is not None:
            raise WorkerDied(f"refit worker process {self.pid} exited ({self.exit_reason()})")
        if self.busy:
            # One job at a time: two would share the socket's replies.
            raise RuntimeError("the refit worker is still running a job")
        meta, arrays = job_message(job)
        self._pending = PendingJob(self, job is None, meta, arrays)
        return self._pending

    def close(self, kill: bool = False) -> None:
        """Stop the worker: an idle one exits when its socket closes; ``kill``
        stops a busy one at once rather than after its refit."""
        self._finalizer.detach()
        _stop(self.proc, self.conn, kill)


# -- the worker's side -------------------------------------------------------
def _handle(meta: dict, arrays: dict[str, np.ndarray]) -> tuple[dict, dict]:
    from streamgmm.detect.refit import run_refit

    job = job_from_message(meta, arrays)
    if job is None:
        return {"kind": "pong"}, {}
    return result_message(run_refit(*job))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m streamgmm.detect.refit_worker FD (started by the detector)",
              file=sys.stderr)
        return 2
    # Ctrl-C in a terminal reaches the whole process group: the detector
    # decides when its worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="streamgmm refit worker %(process)d: %(levelname)s %(message)s")
    conn = Connection(int(argv[0]))
    while True:
        try:
            meta, arrays = recv_message(conn)
        except (EOFError, OSError):
            return 0  # the detector closed its end, or is gone
        reply_meta, reply_arrays = _handle(meta, arrays)
        try:
            send_message(conn, reply_meta, **reply_arrays)
        except OSError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
