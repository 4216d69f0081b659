"""Extension variants inside an experiment: fine-tuned from the stored base model, or from scratch."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mer_lib.errors import ParameterError
from mer_lib.experiments import Experiment
from mer_lib.extensions import extension_config, quality_config
from mer_lib.training import run_identity, run_key

DATA = SimpleNamespace(identity="data-id", n_frames=63)


def test_quick_fine_tunes_from_the_base_model_of_the_same_head_and_seed():
    exp = Experiment.from_parameters(profile="quick")
    cfg = extension_config(exp, "expof_a2b2e", 21, DATA, c=0.5)
    base = exp.train_config("a2b2e", 21)
    assert cfg.init_from == f"a2b2e/{run_key(run_identity(base, DATA))}"
    assert cfg.epochs == cfg.patience == exp.profile_spec.finetune_epochs == 5
    assert (cfg.width, cfg.batch_size) == (base.width, base.batch_size)
    assert (cfg.lr, base.lr) == (exp.profile_spec.finetune_lr, exp.profile_spec.lr) == (1e-3, 3e-3)
    smoke = Experiment.from_parameters(profile="smoke")          # no finetune_lr: the profile's lr
    assert extension_config(smoke, "expof_a2e", 6, DATA).lr == smoke.profile_spec.lr
    opts = cfg.objective_options
    assert (opts["c"], opts["reg_batch"], opts["bands"], opts["segments"]) == (0.5, 1, 2, 4)
    assert extension_config(exp, "expof_a2b2e", 21, DATA).objective_options["c"] == exp.expo_c == 0.1
    assert Experiment.from_parameters(profile="paper").expo_c == 1.0             # the profile's c
    assert Experiment.from_parameters(profile="quick", expo_c=2.0).expo_c == 2.0  # unless given


def test_paper_trains_extensions_from_scratch_with_expos_settings():
    exp = Experiment.from_parameters(profile="paper")
    cfg = extension_config(exp, "expos_a2e", 6, DATA)
    assert cfg.init_from is None and cfg.epochs == 200
    assert (cfg.objective_options["reg_batch"], cfg.objective_options["bands"]) == (16, 4)
    q = quality_config(exp)
    assert (q.bands, q.segments, q.n_examples, q.sigma, q.n_neighbours) == (4, 8, None, 0.1, 5)


def test_a_paper_system_is_not_an_extension():
    with pytest.raises(ParameterError, match="not an extension variant"):
        extension_config(Experiment.from_parameters(profile="smoke"), "aa2e", 6, DATA)


def test_fine_tuning_keeps_the_last_epoch_and_the_rule_is_keyed():
    exp = Experiment.from_parameters(profile="quick")
    cfg = extension_config(exp, "expof_a2e", 6, DATA)
    assert cfg.keep == "last" and cfg.identity()["keep"] == "last"
    assert "keep" not in exp.train_config("a2e", 6).identity()     # stored keys stay valid
    paper = extension_config(Experiment.from_parameters(profile="paper"), "expof_a2e", 6, DATA)
    assert paper.keep == "best"


def test_extension_models_default_to_the_experiments_extension_seeds(monkeypatch):
    import mer_lib.extensions as extensions

    calls = []
    monkeypatch.setattr(extensions, "extension_model", lambda runner, v, s, **o: calls.append((v, s)) or (v, s))
    stacked = []
    runner = SimpleNamespace(exp=Experiment.from_parameters(profile="quick"),
                             train_extensions=lambda v, s, o: stacked.append((tuple(v), tuple(s), o)))
    models = extensions.extension_models(runner)
    assert stacked == [(("expof_a2e", "expos_a2e"), (6, 21), {})]      # the stacks first
    assert calls == [("expof_a2e", 6), ("expof_a2e", 21), ("expos_a2e", 6), ("expos_a2e", 21)]
    assert list(models) == calls
    calls.clear()
    extensions.extension_models(runner, ["ignorm_a2e"], seeds=[42])
    assert calls == [("ignorm_a2e", 42)]
