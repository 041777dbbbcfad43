import pytest

from benchmarks.pruners import group_by_engine, plan, server_flags


def test_shared_pruners_share_one_engine_and_pick_per_request():
    runs = plan(["none", "asl", "fastkv", "snapkv", "gemfilter", "asl-2pass"], 1024, 2048, None)
    groups = group_by_engine(runs)
    assert [[run.name for run in group] for group in groups] == [
        ["none", "asl", "fastkv", "snapkv"], ["gemfilter"], ["asl-2pass"]
    ]
    assert runs[2].request == {"kv_pruner": "fastkv"}
    assert runs[0].engine == {"kv_pruner": "asl", "kv_budget": 1024, "asl_select_k": 2048}


def test_server_flags():
    engine = plan(["asl-2pass"], 1024, None, 0.5)[0].engine
    assert server_flags(engine) == ["--kv-pruner", "asl", "--kv-budget", "1024", "--asl-tau", "0.5", "--asl-two-pass"]


def test_unknown_pruner_refused():
    with pytest.raises(ValueError, match="unknown pruner"):
        plan(["h2o"], 1024, None, None)
