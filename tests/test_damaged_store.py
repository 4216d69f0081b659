"""A damaged store: every stored file of the newer parts, truncated, garbled, emptied or foreign.

For each kind of stored file — the final ``model.pt`` of an extension model (ExpO and RAR), its
``config.json`` and ``history.csv``, the resume state ``state.pt`` of an extension model and of a
member of a stacked run, ``table.csv`` and ``meta.json`` of an explanation, an attribution, an
attack (of an extension model) and a step-costs entry — and each kind of damage — half its
bytes, its middle third overwritten with random bytes, one bit of its middle byte flipped,
0 bytes, the file of another identity / version — the same model or table is asked for again through the public API. The
answer must be one of:

- the undamaged result, recomputed, with a line on stderr (or a warning) naming the damaged file;
- a :class:`~mer_lib.errors.MerError` whose message names the damaged file.

Never another exception type (a stack trace from deep inside pandas or torch), never numbers
that differ from the undamaged result (for a stacked run: within the stack's documented
float64 tolerance, ``RTOL`` of ``tests/test_stack.py``), never a table mixed from two versions.
"""
from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import mer_lib.trainer as trainer
from mer_lib.attacks import AttackConfig
from mer_lib.attributions.report import attribution_config
from mer_lib.comparison import attack_tables, attribution_tables, explanation_tables
from mer_lib import step_costs as step_costs_module
from mer_lib.step_costs import step_costs
from mer_lib.data import MerTensors, split_indices
from mer_lib.errors import MerError
from mer_lib.experiments import Experiment
from mer_lib.extensions import extension_model, quality_config
from mer_lib.runner import Runner
from mer_lib.stack_training import get_trained_stack
from mer_lib.store import META, TABLE, write_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUIET = dict(log=lambda message: None)
EXP = dict(profile="smoke", device="cpu")
ATTACK = AttackConfig(epsilon=0.01, step_size=0.005, max_iterations=3)
STACK = dict(width=0.0625, epochs=2, patience=5, lr=3e-3)
STACK_SEEDS = (6, 21)
RTOL = 1e-10                      # a stack vs single runs, float64 (tests/test_stack.py)
DAMAGES = ("truncated", "garbled", "bitflip", "emptied", "foreign")


def _fake_time_steps(first, data, repeats):
    """Deterministic 'timings', so that a re-timed step cost equals the stored one."""
    return {v: (0.001 * len(v), math.nan) for v in first}


def _data() -> MerTensors:
    g = torch.Generator().manual_seed(0)
    n = 20
    return MerTensors(torch.randn(n, 1, 16, 20, generator=g), torch.rand(n, 8, generator=g),
                      torch.rand(n, 7, generator=g), split_indices(n), [f"{i:03d}" for i in range(n)],
                      0.0, 1.0, "tiny-damaged-store")


def _runner(home: Path, data) -> Runner:
    return Runner(Experiment.from_parameters(**EXP), home, data=data, **QUIET)


def _base(runner: Runner):
    """The paper's A2E seed 6 the extension models are fine-tuned from (the step-cost reference)."""
    job = next(j for j in runner.train_jobs() if (j.variant, j.seed) == ("a2e", 6))
    return runner.train(job)


def _tables(runner: Runner, expo, rar, base) -> dict:
    """Every stored table of the scenario, through the public API."""
    exp, data, home = runner.exp, runner.data, runner.run_dir
    return {
        "explanation": lambda: explanation_tables([expo], data, quality_config(exp), split=exp.split,
                                                  run_dir=home, device="cpu"),
        "attribution": lambda: attribution_tables([rar], data, attribution_config(exp), split=exp.split,
                                                  run_dir=home, device="cpu"),
        "attack": lambda: attack_tables([expo], data, ATTACK, split=exp.split, run_dir=home, device="cpu"),
        "step_costs": lambda: step_costs([base, expo, rar], data, repeats=1, run_dir=home),
    }


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The undamaged store and results: two extension models, their tables, a stacked run."""
    root = tmp_path_factory.mktemp("damaged-store")
    assert torch.get_default_dtype() == torch.float32
    data = _data()
    home = root / "store"
    runner = _runner(home, data)
    base = _base(runner)
    states = {}
    with pytest.MonkeyPatch.context() as mp:
        def killed(folder, *args, **kwargs):            # killed after state.pt, before model.pt
            raise KeyboardInterrupt

        mp.setattr(trainer, "_save_final", killed)
        for variant in ("expof_a2e", "ignorm_a2e"):
            with pytest.raises(KeyboardInterrupt):
                extension_model(runner, variant, 6)
            folder = next((home / "models" / variant).iterdir())
            states[variant] = (folder / "state.pt").read_bytes()
    expo = extension_model(runner, "expof_a2e", 6)    # resumes from state.pt
    rar = extension_model(runner, "ignorm_a2e", 6)
    assert not (expo.path / "state.pt").exists() and (expo.path / "model.pt").is_file()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(step_costs_module, "_time_steps", _fake_time_steps)
        tables = {name: ask() for name, ask in _tables(runner, expo, rar, base).items()}

    # a stacked run killed after its first epoch: both members have a state.pt
    stack_home = root / "stack-killed"
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        def stop(config, epoch, row):
            if epoch == 1 and config.seed == STACK_SEEDS[-1]:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            get_trained_stack("a2e", STACK_SEEDS, data, "smoke", stack_home, device="cpu", progress=False,
                              on_epoch_end=stop, **STACK)
        shutil.copytree(stack_home, root / "stack-resumed")
        stacked = get_trained_stack("a2e", STACK_SEEDS, data, "smoke", root / "stack-resumed", device="cpu",
                                    progress=False, **STACK)
    finally:
        torch.set_default_dtype(old)
    return SimpleNamespace(home=home, data=data, base=base, expo=expo, rar=rar, states=states, tables=tables,
                           stack_home=stack_home, stacked=stacked)


# ------------------------------------------------------------------ damage

def _damage(path: Path, how: str, foreign: Path | bytes | None = None) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbled":
        lo, hi = len(data) // 3, 2 * len(data) // 3
        noise = np.random.default_rng(len(data)).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
        path.write_bytes(data[:lo] + noise + data[hi:])
    elif how == "bitflip":                             # one bit of the middle byte: bit rot
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1:])
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "foreign":
        if isinstance(foreign, Path):
            foreign = foreign.read_bytes()
        assert foreign is not None and foreign != data
        path.write_bytes(foreign)
    else:
        raise AssertionError(how)


def _other_version_table(path: Path) -> bytes:
    """``table.csv`` as another version would have computed it: the same rows, other numbers."""
    table = pd.read_csv(path, dtype={"example": str, "model_key": str})
    for col in table.columns:
        if table[col].dtype.kind == "f":
            table[col] = table[col] * 1.25 + 0.125
    return table.to_csv(index=False).encode()


def _other_version_meta(path: Path) -> bytes:
    """``meta.json`` of another identity / component version (the key stays the folder's)."""
    meta = json.loads(path.read_text())
    identity = meta["identity"]
    field = next(k for k in ("version", "engine") if k in identity)
    identity[field] = identity[field] + 1
    return json.dumps(meta, indent=2, sort_keys=True).encode()


def _ask(call, damaged: Path, capfd):
    """``call()``: its result when it recomputed and said so (naming ``damaged``), None when it
    raised a MerError naming ``damaged``; anything else fails the test."""
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except MerError as exc:
            assert str(damaged) in str(exc), f"the {type(exc).__name__} does not name {damaged}: {exc}"
            return None
        except Exception as exc:  # noqa: BLE001 - exactly what must not happen
            pytest.fail(f"{type(exc).__name__} instead of a MerError naming {damaged}: {exc}")
    said = capfd.readouterr().err + "\n".join(str(w.message) for w in caught)
    assert str(damaged) in said, f"no line on stderr names the recomputed {damaged}:\n{said}"
    return result


def _same_model(got, want, rtol: float = 0.0) -> None:
    a, b = got.model.state_dict(), want.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        if rtol == 0.0:
            assert torch.equal(a[name].cpu(), b[name].cpu()), f"{name} differs from the undamaged model"
        else:
            x, y = a[name].detach().double().cpu(), b[name].detach().double().cpu()
            scale = float(y.abs().max().clamp_min(1e-300))
            assert float((x - y).abs().max()) <= rtol * scale, f"{name} differs from the undamaged model"
    cols = [c for c in want.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(got.history[cols].reset_index(drop=True),
                                  want.history[cols].reset_index(drop=True), check_dtype=False)


@pytest.fixture
def home(stored, tmp_path) -> Path:
    """A copy of the undamaged store, to damage."""
    return Path(shutil.copytree(stored.home, tmp_path / "store"))


# ------------------------------------------------------------------ models

@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("variant, file", [("expof_a2e", "model.pt"), ("ignorm_a2e", "model.pt"),
                                           ("expof_a2e", "config.json"), ("expof_a2e", "history.csv")])
def test_a_damaged_extension_model(stored, home, capfd, variant, file, how):
    want = stored.expo if variant == "expof_a2e" else stored.rar
    other = stored.rar if variant == "expof_a2e" else stored.expo
    path = home / "models" / variant / want.key / file
    _damage(path, how, home / "models" / other.config.variant / other.key / file)
    got = _ask(lambda: extension_model(_runner(home, stored.data), variant, 6), path, capfd)
    if got is not None:
        _same_model(got, want)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_resume_state_of_an_extension_model(stored, home, capfd, how):
    want = stored.expo
    folder = home / "models" / "expof_a2e" / want.key
    (folder / "model.pt").unlink()                     # killed after state.pt, before model.pt
    (folder / "state.pt").write_bytes(stored.states["expof_a2e"])
    _damage(folder / "state.pt", how, stored.states["ignorm_a2e"])
    got = _ask(lambda: extension_model(_runner(home, stored.data), "expof_a2e", 6), folder / "state.pt", capfd)
    if got is not None:
        _same_model(got, want)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_resume_state_of_a_stacked_run(stored, tmp_path, capfd, float64, how):
    run_dir = Path(shutil.copytree(stored.stack_home, tmp_path / "stack"))
    first, second = (run_dir / "models" / "a2e" / tm.key / "state.pt" for tm in stored.stacked)
    _damage(first, how, second)                        # foreign: the other member's state
    got = _ask(lambda: get_trained_stack("a2e", STACK_SEEDS, stored.data, "smoke", run_dir, device="cpu",
                                         progress=False, **STACK), first, capfd)
    if got is not None:
        for tm, want in zip(got, stored.stacked):
            _same_model(tm, want, rtol=RTOL)


# ------------------------------------------------------------------ tables

@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("file", [TABLE, META])
@pytest.mark.parametrize("kind", ["explanation", "attribution", "attack", "step_costs"])
def test_a_damaged_table(stored, home, capfd, monkeypatch, kind, file, how):
    monkeypatch.setattr(step_costs_module, "_time_steps", _fake_time_steps)
    top = {"explanation": "explanations", "attribution": "attributions", "attack": "attacks",
           "step_costs": "step_costs"}[kind]
    model = stored.rar if kind == "attribution" else stored.expo
    (folder,) = [p for p in (home / top / model.key).iterdir() if p.is_dir()]
    path = folder / file
    foreign = _other_version_table(path) if file == TABLE else _other_version_meta(path)
    _damage(path, how, foreign)
    ask = _tables(_runner(home, stored.data), stored.expo, stored.rar, stored.base)[kind]
    got = _ask(ask, path, capfd)
    if got is not None:
        pd.testing.assert_frame_equal(got, stored.tables[kind])
        # and the store holds the recomputed table again: asked once more, it is read back
        capfd.readouterr()
        pd.testing.assert_frame_equal(ask(), stored.tables[kind])
        assert "damaged" not in capfd.readouterr().err


# ------------------------------------------------------------------ stores written before checksums

def test_tables_and_models_stored_without_checksums_still_load(stored, home, capfd, monkeypatch):
    """A store written before the checksums: read as it is, a table whose rows are missing recomputed."""
    monkeypatch.setattr(step_costs_module, "_time_steps", _fake_time_steps)
    folder = next(p for p in (home / "explanations" / stored.expo.key).iterdir() if p.is_dir())
    meta = json.loads((folder / META).read_text())
    legacy = {k: v for k, v in meta.items() if k in ("identity", "key", "rows", "variant", "seed")}
    table = pd.read_csv(folder / TABLE, dtype={"example": str, "model_key": str})
    shutil.rmtree(folder)
    write_table(folder, table, legacy)
    (folder / META).write_text(json.dumps(legacy, indent=2, sort_keys=True))   # no checksum
    model_pt = home / "models" / "expof_a2e" / stored.expo.key / "model.pt"
    payload = torch.load(model_pt, weights_only=True)
    torch.save({k: payload[k] for k in ("identity", "key", "state_dict", "best_epoch", "best_score")}, model_pt)
    runner = _runner(home, stored.data)
    capfd.readouterr()
    _same_model(extension_model(runner, "expof_a2e", 6), stored.expo)
    ask = _tables(runner, stored.expo, stored.rar, stored.base)["explanation"]
    pd.testing.assert_frame_equal(ask(), stored.tables["explanation"])
    assert capfd.readouterr().err == ""
    lines = (folder / TABLE).read_text().splitlines(keepends=True)
    (folder / TABLE).write_text("".join(lines[: len(lines) // 2]))              # whole rows missing
    got = _ask(ask, folder / TABLE, capfd)
    assert got is not None
    pd.testing.assert_frame_equal(got, stored.tables["explanation"])
