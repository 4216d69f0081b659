"""The tables a chapter shows about its models are read from the models' own configs."""
from types import SimpleNamespace as NS

from mer_lib.model_tables import options_table, shared_options_text, system_rows, trained_from


def _model(variant, seed, init_from, epochs, **options):
    return NS(config=NS(variant=variant, seed=seed, init_from=init_from, objective_options=options),
              history=[{}] * epochs)


def test_systems_say_where_their_models_came_from_and_how_long_they_ran():
    models = [_model("ignorm_a2e", 6, "a2e/k1", 5), _model("ignorm_a2e", 21, "a2e/k2", 3),
              _model("igsumnorm_a2e", 6, None, 40)]
    assert [trained_from(m) for m in models] == ["A2E", "A2E", "scratch"]
    rows = system_rows(models)
    assert rows.to_dict("records") == [
        {"system": "IG-NORM-A2E", "from": "A2E", "seeds": "6, 21", "epochs": "3–5"},
        {"system": "IG-SUM-NORM-A2E", "from": "scratch", "seeds": "6", "epochs": "40"}]


def test_options_all_systems_share_leave_the_table_for_the_prose():
    models = [_model("ignorm_a2e", 6, None, 1, weight=1.0, epsilon=0.03, reg_batch=None),
              _model("expos_a2e", 6, None, 1, c=0.1, reg_batch=None),
              _model("igsumnorm_a2e", 6, None, 1, weight=2.0, epsilon=0.03, reg_batch=None)]
    table, shared = options_table(models)
    assert shared == {"reg_batch": "the whole batch"}
    assert list(table.columns) == ["option", "IG-NORM-A2E", "ExpO-S-A2E", "IG-SUM-NORM-A2E"]
    assert table.set_index("option").to_dict("index") == {
        "RAR weight (λ or β)": {"IG-NORM-A2E": "1", "ExpO-S-A2E": "–", "IG-SUM-NORM-A2E": "2"},
        "RAR radius ε (standardised units)": {"IG-NORM-A2E": "0.03", "ExpO-S-A2E": "–", "IG-SUM-NORM-A2E": "0.03"},
        "ExpO weight c": {"IG-NORM-A2E": "–", "ExpO-S-A2E": "0.1", "IG-SUM-NORM-A2E": "–"}}
    assert shared_options_text(shared, 3) == "All 3 systems share regularised clips per batch = the whole batch."
    assert shared_options_text(shared, 1) == ""
