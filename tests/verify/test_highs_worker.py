"""Solves in worker processes: the same answers as in this process, stopped at once when cancelled,
and never outliving the verifier that started them."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from glsverify.verify.highs_worker import save_pickle
from glsverify.verify.milp import ProcessSolve
from tests.verify.test_milp import _setup


@pytest.mark.parametrize("seed", [0, 3])
def test_a_worker_process_answers_as_this_process_does(tmp_path, seed):
    net, encoding, x, y = _setup(5)
    row = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    margins = (y @ row.T).flatten()
    statuses = []
    for threshold in (float(margins.min()) - 0.5, float(margins.min()) + 0.01):  # proved empty, then reached
        here = encoding.solve(row, torch.tensor([threshold], dtype=torch.float64), 30, seed=seed)
        there = encoding.start(row, torch.tensor([threshold], dtype=torch.float64), 30, 1e-4, seed, str(tmp_path)).outcome()
        assert there.status == here.status
        statuses.append(there.status)
        if there.status == "feasible":
            with torch.no_grad():
                value = float(net.forward(torch.as_tensor(there.x).reshape(1, -1)) @ row.T)
            assert value <= threshold + 1e-3
    assert statuses == ["infeasible", "feasible"]


def test_cancel_stops_a_running_solve_at_once(tmp_path):
    solve = ProcessSolve([sys.executable, "-c", "import time; time.sleep(60)"], str(tmp_path / "out"))
    time.sleep(0.2)
    assert not solve.done()
    started = time.perf_counter()
    solve.cancel()
    assert solve.done() and time.perf_counter() - started < 5
    assert solve.outcome().status == "unknown"


def test_a_worker_that_fails_answers_error_and_one_that_writes_an_outcome_is_read(tmp_path):
    failed = ProcessSolve([sys.executable, "-c", "raise SystemExit(3)"], str(tmp_path / "a"))
    assert failed.outcome().status == "error"
    save_pickle(str(tmp_path / "b.ready"), {"status": "infeasible", "x": None, "seconds": 1.5})
    copy = f"import shutil; shutil.copy({str(tmp_path / 'b.ready')!r}, {str(tmp_path / 'b')!r})"
    answered = ProcessSolve([sys.executable, "-c", copy], str(tmp_path / "b")).outcome()
    assert (answered.status, answered.seconds) == ("infeasible", 1.5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_worker_dies_with_the_process_that_started_it():
    """A parent starts a worker that arms the parent-death signal, then exits: the worker must be gone."""
    worker = ("import os, sys, time; from glsverify.verify.highs_worker import _die_with_parent; "
              "_die_with_parent(int(sys.argv[1])); print('armed', flush=True); time.sleep(60)")
    parent = ("import os, subprocess, sys; "
              f"child = subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid())], stdout=subprocess.PIPE); "
              "child.stdout.readline(); print(child.pid, flush=True)")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    pid = int(out.stdout.strip())
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, reaped by nobody yet, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_process_that_cannot_start_leaves_the_solve_to_this_process(tmp_path, monkeypatch):
    from glsverify.verify import milp_encoding as M

    def refuse(*args, **kwargs):
        raise OSError("no processes left")

    monkeypatch.setattr(M.subprocess, "Popen", refuse)
    net, encoding, x, y = _setup(5)
    row = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    threshold = float((y @ row.T).min()) - 0.5
    handle = encoding.start(row, torch.tensor([threshold], dtype=torch.float64), 30, 1e-4, 0, str(tmp_path))
    assert isinstance(handle, M.ThreadSolve) and handle.outcome().status == "infeasible"


def test_writers_of_one_path_at_once_each_succeed(tmp_path):
    path = str(tmp_path / "encoding.pkl")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: save_pickle(path, {"k": k, "pad": bytes(1 << 20)}), range(32)))
    with open(path, "rb") as stream:
        assert len(pickle.load(stream)["pad"]) == 1 << 20
    assert os.listdir(tmp_path) == ["encoding.pkl"]


def test_a_worker_imports_no_torch():
    """Workers start in a fraction of a second because the module loads numpy, scipy.sparse and highspy, not torch."""
    code = "import sys, glsverify.verify.highs_worker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == "False"


def test_a_solve_in_this_process_prints_nothing():
    """`certify --json` prints its answer on stdout, and solves may run in its process (threads): HiGHS's
    banner or log there would corrupt the JSON. Both answers are reached, so both paths run."""
    code = ("import numpy as np, scipy.sparse as sp; from glsverify.verify.highs_worker import MilpProblem, solve_problem; "
            "box = lambda hi: MilpProblem(np.array([1.0, 1.0]), sp.csr_matrix(np.array([[1.0, 1.0]])), np.array([1.5]), "
            "np.array([np.inf]), np.zeros(2), np.full(2, hi), np.array([1, 0])); "
            "import sys; sys.stderr.write(solve_problem(box(0.5), 5)[0] + ' ' + solve_problem(box(1.0), 5)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stderr.strip().splitlines()[-1] == "infeasible feasible"
    assert out.stdout == ""
