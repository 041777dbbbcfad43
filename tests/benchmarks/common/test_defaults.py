"""A results file measured before a default it depends on changed is stale; one that pins the setting is not."""

from benchmarks.common.defaults import DefaultChange, runs_on_default, stale_reasons

LAYERS = DefaultChange("--kv-budget-layers", "layers", True, "abc1234", "2026-11-30T07:00:00+00:00", "now shared")


def document(configs, commit_date):
    commit = None if commit_date is None else "def5678" + "0" * 33
    return {"commit": commit, "commit_date": commit_date, "plan": {"configs": configs}, "records": []}


def test_a_budgeted_spec_without_the_setting_runs_on_the_default():
    assert runs_on_default(["none", "asl,B=1024,k=2048"], LAYERS)
    assert not runs_on_default(["none", "asl,k=2048", "asl,B=1024,layers=per-layer"], LAYERS)  # no budget, pinned
    assert runs_on_default(["fixed B=1024"], LAYERS)  # a server on the plugin's defaults


def test_a_setting_no_spec_pins_affects_every_pruning_config_only():
    budget = DefaultChange("--max-num-batched-tokens", None, False, "abc1234", "2026-12-03T10:00:00+00:00", "kept")
    assert runs_on_default(["none", "asl,k=2048"], budget)
    assert runs_on_default(["fastkv,k=1024,layers=shared"], budget)
    assert not runs_on_default(["none", "none,vllm-default", "none,eager"], budget)


def test_stale_only_when_measured_before_the_change_and_depending_on_it():
    before, after = "2026-11-29T12:00:00+00:00", "2026-12-01T09:00:00+01:00"
    assert stale_reasons(document(["none", "asl,B=1024"], after), [LAYERS]) == []
    assert stale_reasons(document(["none", "asl,B=1024,layers=shared"], before), [LAYERS]) == []
    assert stale_reasons(document(["none", "asl,B=1024"], before), [LAYERS]) == [
        "measured at commit def5678 (2026-11-29T12:00:00+00:00), before --kv-budget-layers's default changed "
        "(now shared: commit abc1234, 2026-11-30T07:00:00+00:00)"
    ]
    assert stale_reasons(document(["asl,B=1024"], None), [LAYERS])[0].startswith("measured at no recorded commit")


def test_configs_come_from_the_records_when_the_plan_has_none():
    stale = {"commit_date": None, "records": [{"config": "asl,B=1024"}]}
    assert stale_reasons(stale, [LAYERS])
