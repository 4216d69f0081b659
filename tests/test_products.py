"""A new stored measurement is one table function plus one registry entry: the runner plans it,
computes it once into the store and finds it afterwards, with no other file edited."""
import pandas as pd
import pytest

from mer_lib import products
from mer_lib.errors import ParameterError
from mer_lib.experiments import Experiment
from mer_lib.products import Product, table_plan
from mer_lib.runner import Runner
from mer_lib.store import get_table, table_dir

QUIET = dict(log=lambda message: None)
computed = []


def clip_count_identity(model_key, config, split, data_identity):
    """What the toy table is keyed by."""
    return {"measurement": "clip_count", "version": 1, "model": model_key, "split": split, "data": data_identity}


def clip_count_table(trained, data, config, *, split, run_dir, device):
    """The toy measurement: how many clips of ``split`` the model would be measured on."""
    identity = clip_count_identity(trained.key, config, split, data.identity)

    def compute():
        computed.append(trained.key)
        return pd.DataFrame({"model_key": [trained.key], "clips": [len(data.split[split])]})

    return get_table(table_dir(run_dir, "clip_count", trained.key, identity), identity, compute,
                     what="clip count").table


TOY = Product("clip_count", clip_count_identity, clip_count_table, configs_of=lambda exp: [None],
              reads=lambda paper_jobs, extension_jobs: [(job, "training") for job in paper_jobs])


def test_a_registered_toy_product_is_planned_computed_once_and_found(tmp_path, monkeypatch):
    monkeypatch.setitem(products.PRODUCTS, "clip_count", TOY)           # the one registry line
    computed.clear()
    runner = Runner(Experiment.from_parameters(profile="smoke", device="cpu", variants=["a2e", "a2m2e"]),
                    tmp_path, **QUIET, progress=False)
    toy_jobs = [j for j in runner.table_jobs() if j.product == "clip_count"]
    assert [(j.model.variant, j.chapter, j.name) for j in toy_jobs] == [
        ("a2e", "training", "clip_count of a2e seed 6"), ("a2m2e", "training", "clip_count of a2m2e seed 6")]
    plan = runner.plan(("table",))
    assert plan[plan.job.str.startswith("clip_count")].status.tolist() == ["to do", "to do"]
    assert all(runner.execute(j) for j in toy_jobs)                    # computed now (models trained first)
    assert not any(runner.execute(j) for j in toy_jobs)                # then found in the store
    assert sorted(computed) == sorted(j.model.key for j in toy_jobs)
    assert all(runner.is_done(j) for j in toy_jobs)
    table = clip_count_table(runner.model_of(toy_jobs[0].model), runner.data, None, split="test",
                             run_dir=runner.run_dir, device="cpu")
    assert table.clips.tolist() == [len(runner.data.split["test"])]


def test_the_table_plan_follows_each_products_reads_in_registry_order(monkeypatch):
    monkeypatch.setitem(products.PRODUCTS, "clip_count", TOY)
    plan = table_plan(["p1", "p2"], [], audio=False)
    assert [(name, job) for name, job, _ in plan if name == "clip_count"] == [("clip_count", "p1"), ("clip_count", "p2")]
    assert not [name for name, _, _ in plan if name == "realisability"]   # needs audio
    with pytest.raises(ParameterError, match="unknown product 'no_such_product'"):
        products.get_product("no_such_product")
