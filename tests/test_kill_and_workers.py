"""``kill -9`` anywhere in training, then the same command again; two workers on one store.

**Kill and rerun.** A child process trains, on a tiny store, one of

- a stack of 2 seeds (:func:`mer_lib.stack_training.get_trained_stack`) of the plain ``a2e``
  or the adversarial ``aa2e`` objective (float64, as ``tests/test_stack.py``);
- an extension model (:func:`mer_lib.extensions.extension_model`) of each ExpO and RAR
  objective (``expof_a2e``, ``expos_a2e``, ``ignorm_a2e``, ``igsumnorm_a2e``), fine-tuned
  from the stored A2E as the smoke profile does (2 fine-tuning epochs instead of the
  profile's 1, so that there is an epoch to resume across) and, at one kill point, trained
  from scratch (the profile without ``finetune_epochs``: 2 epochs);

and SIGKILLs itself at one point:

- ``epoch1``: right after epoch 1's state (``state.pt``, ``history.csv``) of every member;
- ``between`` (stacks): after the first member's epoch-1 state, before the second's — the
  members are then stored at different epochs and resume one by one;
- ``mid-state``: inside the atomic write of the first ``state.pt`` of epoch 2, after the
  temporary is complete, before the rename;
- ``mid-model``: inside the atomic write of the first ``model.pt``, before the rename;
- ``after-model``: after the first ``model.pt`` is in place, inside the write of the
  ``history.csv`` that follows it (``state.pt`` not yet removed).

Then the same call runs again in a fresh process, and the store is compared with an
uninterrupted run in a third store: the same files (no ``*.tmp-*``, no lock owner note, no
``state.pt`` left), and every model equal — bit-equal weights and the same history where
the members resume together; where they cannot (``between``), the stack's documented
tolerance (``RTOL = 1e-10`` relative, ``tests/test_stack.py``) with identical early-stopping
decisions (``improved``, best epoch). A fresh process is a fork of a helper process that
only imported the library (no second import per run: it saves ~5 s a run on a busy CPU).

**Two workers.** Two processes start at once on one store and ask, in order, for the same
stack, the same extension model, the same explanation table and the same attribution table;
both exit 0, each item is computed once (counted by wrappers inside the workers), the
workers print identical digests of every model's weights and of both tables, and the store
holds no temporaries, owner notes or resume states.

Found when these tests were written: every ``after-model`` case (both stacks, the four
fine-tuned extensions) kept the killed run's ``state.pt``, its ``.history.csv.tmp-*`` and the
dead holder's ``train.lock.owner`` for ever (the rerun found ``model.pt`` and returned without
writing into the folder); fixed by :func:`mer_lib.training._tidy_finished`. Every other kill
point, and the two workers, passed as written.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-10                       # a stack vs single runs, float64 (tests/test_stack.py)
STACKS = ("a2e", "aa2e")
EXTENSIONS = ("expof_a2e", "expos_a2e", "ignorm_a2e", "igsumnorm_a2e")
TIMEOUT = 240

# The code every child runs: argv = home, objective, how (stack | finetune | scratch | base), kill point.
_CHILD = r'''
import dataclasses, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
import mer_lib.profiles as PR
import mer_lib.trainer as T
from mer_lib.data import MerTensors, split_indices
from mer_lib.experiments import Experiment
from mer_lib.extensions import extension_model
from mer_lib.runner import Runner
from mer_lib.stack_training import get_trained_stack

home, objective, how, kill = sys.argv[1:5]
members = 2 if how == "stack" else 1
# fine-tune for 2 epochs (the smoke profile's 1 leaves nothing to resume across), or from scratch
PR.PROFILES["smoke"] = dataclasses.replace(PR.PROFILES["smoke"],
                                           finetune_epochs=None if how == "scratch" else 2)
if how == "stack":
    torch.set_default_dtype(torch.float64)

def die(where):
    print(f"killed: {where}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

counts = {"progress": 0, "state": 0, "model": 0}
real_progress, real_replace = T._save_progress, os.replace

def save_progress(folder, identity, epoch, *args, **kwargs):
    real_progress(folder, identity, epoch, *args, **kwargs)
    if Path(folder).parent.name == objective and epoch == 1:
        counts["progress"] += 1
        if (kill == "between" and counts["progress"] == 1) or \
                (kill == "epoch1" and counts["progress"] == members):
            die(f"after epoch 1 of {folder}")

def replace(src, dst, *args, **kwargs):
    dst = Path(dst)
    if dst.parent.parent.name == objective:
        if dst.name == "state.pt":
            counts["state"] += 1
            if kill == "mid-state" and counts["state"] == members + 1:
                die(f"writing {dst}")
        elif dst.name == "model.pt":
            counts["model"] += 1
            if kill == "mid-model" and counts["model"] == 1:
                die(f"writing {dst}")
        elif dst.name == "history.csv" and kill == "after-model" and counts["model"] == 1 \
                and (dst.parent / "model.pt").is_file():
            die(f"writing {dst} after model.pt")
    return real_replace(src, dst, *args, **kwargs)

T._save_progress, os.replace = save_progress, replace

g = torch.Generator().manual_seed(0)
n = 20
data = MerTensors(torch.randn(n, 1, 16, 20, generator=g), torch.rand(n, 8, generator=g),
                  torch.rand(n, 7, generator=g), split_indices(n), [f"{i:03d}" for i in range(n)],
                  0.0, 1.0, "tiny-kill-and-workers")
if how == "stack":
    get_trained_stack(objective, (6, 21), data, "smoke", home, device="cpu", progress=False,
                      width=0.0625, epochs=2, patience=5, lr=3e-3)
else:
    runner = Runner(Experiment.from_parameters(profile="smoke", device="cpu"), home, data=data,
                    log=lambda message: None)
    if how == "base":
        runner.train(next(j for j in runner.train_jobs() if (j.variant, j.seed) == ("a2e", 6)))
    else:
        extension_model(runner, objective, 6)
print("done", flush=True)
'''

# A process that imports the library once, then forks one fresh child per request.
_FORKER = r'''
import json, os, sys, traceback
import torch, numpy, pandas
import mer_lib.training, mer_lib.stack_training, mer_lib.extensions, mer_lib.runner, mer_lib.experiments
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.argv = ["child", *job["args"]]
            exec(compile(job["code"], "<child>", "exec"), {"__name__": "__main__"})
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
'''


class _Forker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _FORKER], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        assert self._line(TIMEOUT) == "ready"

    def _line(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            pytest.fail(f"no answer from the child within {timeout} s")
        return self.proc.stdout.readline().strip()

    def run(self, log: Path, *args: str) -> tuple[int, str]:
        """Run the child code with ``args`` in a fresh forked process: (exit code, its output)."""
        self.proc.stdin.write(json.dumps({"code": _CHILD, "args": [str(a) for a in args], "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        rc = json.loads(self._line(TIMEOUT))["rc"]
        return rc, log.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def forker():
    f = _Forker()
    yield f
    f.close()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, forker):
    """Lazily made stores: the base A2E (fine-tuning starts from it) and each uninterrupted run."""
    root = tmp_path_factory.mktemp("kill")
    made: dict = {}

    def get(objective: str, how: str) -> Path:
        key = (objective, how)
        if key not in made:
            home = root / f"{objective}-{how}"
            if how == "finetune":
                shutil.copytree(get("a2e", "base"), home)
            rc, out = forker.run(root / f"{objective}-{how}.log", home, objective, how, "none")
            assert rc == 0, out
            made[key] = home
        return made[key]

    get.root = root
    return get


# ------------------------------------------------------------------ comparing stores

def _files(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-300))


def _assert_same_store(ref: Path, home: Path, exact: bool) -> None:
    files = _files(home)
    left = [f for f in files if ".tmp-" in f or f.endswith((".owner", "state.pt")) or ".corrupt" in f]
    assert left == [], f"left over: {left}"
    assert files == _files(ref)
    models = [Path(f).parent for f in files if f.endswith("model.pt")]
    assert models
    for folder in models:
        a = torch.load(ref / folder / "model.pt", weights_only=True)
        b = torch.load(home / folder / "model.pt", weights_only=True)
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for name, t in a["state_dict"].items():
            if exact:
                assert torch.equal(t, b["state_dict"][name]), (folder, name)
            else:
                assert _rel(t, b["state_dict"][name]) <= RTOL, (folder, name)
        assert a["best_epoch"] == b["best_epoch"], folder
        ha, hb = (pd.read_csv(p / folder / "history.csv").drop(columns="seconds") for p in (ref, home))
        assert list(ha.columns) == list(hb.columns)
        assert list(ha.epoch) == list(hb.epoch) and list(ha.improved) == list(hb.improved), folder
        hm = pd.DataFrame(b["history"]).drop(columns="seconds")
        assert list(hm.epoch) == list(hb.epoch), folder           # model.pt's copy of the history
        for col in ha.columns:
            x, y = ha[col].astype(float).to_numpy(), hb[col].astype(float).to_numpy()
            nan = (x != x) & (y != y)
            if exact:
                assert ((x == y) | nan).all(), (folder, col)
            else:
                assert ((abs(x - y) <= RTOL * abs(x).clip(1e-12)) | nan).all(), (folder, col)
        ca, cb = (json.loads((p / folder / "config.json").read_text()) for p in (ref, home))
        ca.pop("created"), cb.pop("created")
        assert ca == cb, folder


def _kill_and_rerun(forker, stores, objective: str, how: str, kill: str, exact: bool) -> None:
    ref = stores(objective, how)
    home = stores.root / f"{objective}-{how}-{kill}"
    if how == "finetune":
        shutil.copytree(stores("a2e", "base"), home)
    rc, out = forker.run(Path(f"{home}.killed.log"), home, objective, how, kill)
    assert rc == -signal.SIGKILL and "killed:" in out, out
    rc, out = forker.run(Path(f"{home}.rerun.log"), home, objective, how, "none")
    assert rc == 0, out
    _assert_same_store(ref, home, exact)


@pytest.mark.parametrize("kill", ["epoch1", "between", "mid-state", "mid-model", "after-model"])
@pytest.mark.parametrize("objective", STACKS)
def test_a_killed_stack_reruns_to_the_uninterrupted_models(objective, kill, forker, stores):
    _kill_and_rerun(forker, stores, objective, "stack", kill, exact=kill != "between")


@pytest.mark.parametrize("kill", ["epoch1", "mid-state", "mid-model", "after-model"])
@pytest.mark.parametrize("objective", EXTENSIONS)
def test_a_killed_fine_tuning_reruns_to_the_uninterrupted_model(objective, kill, forker, stores):
    _kill_and_rerun(forker, stores, objective, "finetune", kill, exact=True)


@pytest.mark.parametrize("objective", EXTENSIONS)
def test_a_killed_extension_trained_from_scratch_reruns_to_the_uninterrupted_model(objective, forker, stores):
    _kill_and_rerun(forker, stores, objective, "scratch", "mid-state", exact=True)


# ------------------------------------------------------------------ two workers

_WORKER = r'''
import hashlib, json, os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import mer_lib.attributions.report as AR
import mer_lib.explain.report as ER
import mer_lib.stack_training as S
import mer_lib.training as T
from mer_lib.attributions.report import attribution_config
from mer_lib.comparison import attribution_tables, explanation_tables
from mer_lib.data import MerTensors, split_indices
from mer_lib.experiments import Experiment
from mer_lib.extensions import extension_model, quality_config
from mer_lib.runner import Runner

home, marks, counts = sys.argv[1:4]

def note(what):                 # one line per computation, appended by whichever worker does it
    with open(counts, "a") as fh:
        fh.write(f"{os.getpid()} {what}\n")
    time.sleep(1.0)             # long enough for the other worker to be waiting on the lock

real_train, real_stack, real_table = T.train, S.train_stack, ER.get_table

def train(config, *args, **kwargs):
    note(f"train {config.variant} {config.seed}")
    return real_train(config, *args, **kwargs)

def train_stack(configs, *args, **kwargs):
    note(f"stack {configs[0].variant} {[c.seed for c in configs]}")
    return real_stack(configs, *args, **kwargs)

def get_table(folder, identity, compute, *, what, **kwargs):
    def counted():
        note(f"table {what.split()[0]}")
        return compute()
    return real_table(folder, identity, counted, what=what, **kwargs)

T.train, S.train_stack, ER.get_table, AR.get_table = train, train_stack, get_table, get_table

g = torch.Generator().manual_seed(0)
n = 20
data = MerTensors(torch.randn(n, 1, 16, 20, generator=g), torch.rand(n, 8, generator=g),
                  torch.rand(n, 7, generator=g), split_indices(n), [f"{i:03d}" for i in range(n)],
                  0.0, 1.0, "tiny-kill-and-workers")
exp = Experiment.from_parameters(profile="smoke", device="cpu")
runner = Runner(exp, home, data=data, log=lambda message: None)

open(os.path.join(marks, f"ready-{os.getpid()}"), "w").close()     # start together
deadline = time.time() + 120
while len(os.listdir(marks)) < 2 and time.time() < deadline:
    time.sleep(0.01)

def weights(tm):
    h = hashlib.sha256()
    for name, t in sorted(tm.model.state_dict().items()):
        h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

def table(df):
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()

stack = S.get_trained_stack("a2e", (6, 21), data, "smoke", home, device="cpu", progress=False)
expo = extension_model(runner, "expof_a2e", 6)
explained = explanation_tables([expo], data, quality_config(exp), split=exp.split, run_dir=home, device="cpu")
attributed = attribution_tables([expo], data, attribution_config(exp), split=exp.split, run_dir=home,
                                device="cpu")
print(json.dumps({"stack": [weights(tm) for tm in stack], "expo": weights(expo),
                  "explanation": table(explained), "attribution": table(attributed)}))
'''


def test_two_workers_compute_each_model_and_table_once(tmp_path):
    home, marks, counts = tmp_path / "store", tmp_path / "ready", tmp_path / "counts.txt"
    marks.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_WORKER), str(home), str(marks), str(counts)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [o[1][-3000:] for o in outs]
    digests = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert digests[0] == digests[1]
    done = sorted(line.split(" ", 1)[1] for line in counts.read_text().splitlines())
    assert done == ["stack a2e [6, 21]", "table attributions", "table explanations", "train expof_a2e 6"], done
    assert any("waiting for process" in o[1] for o in outs)           # they did meet at a lock
    files = _files(home)
    assert [f for f in files if ".tmp-" in f or f.endswith((".owner", "state.pt")) or ".corrupt" in f] == []
    assert sum(f.endswith("model.pt") for f in files) == 3
