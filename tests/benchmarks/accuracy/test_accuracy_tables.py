from benchmarks.accuracy import tables

SHARED = "asl,B=1024,heads=shared,k=2048,tau=0.3"


def record(config, index, score, length=4000, haystack="noise", layer=None, **fields):
    return {
        "config": config,
        "key": f"p{index}",
        "length": length,
        "haystack": haystack,
        "score": score,
        "selection_layer": layer,
        **fields,
    }


def test_score_table_gives_mean_interval_and_count_per_cell():
    records = [record("none", i, 1.0) for i in range(20)] + [record(SHARED, i, float(i < 10)) for i in range(20)]
    table = tables.score_table(records, lambda r: r["length"], [4000, 8000], "tokens")
    assert "| none | 100 [84, 100] (n=20) | - |" in table
    assert f"| {SHARED} | 50 [30, 70] (n=20) | - |" in table


def test_difference_uses_only_the_prompts_full_kv_also_has():
    full = [record("none", i, 1.0) for i in range(10)]
    # The pruned config also answered 10 more prompts that full KV has not reached: they do not count.
    mine = [record(SHARED, i, 1.0) for i in range(10)] + [record(SHARED, i, 0.0) for i in range(10, 20)]
    table = tables.difference_table(full + mine, lambda r: r["length"], [4000], "tokens")
    assert f"| {SHARED} | +0.0 (intervals overlap): 100 [72, 100] vs 100 [72, 100] |" in table


def test_selection_rate_pools_asl_configs_per_haystack_length_tau():
    records = (
        [record(SHARED, i, 1.0, layer=17 if i < 5 else None) for i in range(20)]
        + [record("asl,k=2048,tau=0.5", i, 1.0, haystack="prose", layer=15) for i in range(20)]
        + [record("fastkv,k=1024", i, 1.0, layer=14) for i in range(20)]
    )
    table = tables.selection_rate_table(records)
    assert "| noise | 4000 | 0.3 | 2048 | 5/20 | 25 [11, 47] | 17 x5, none x15 |" in table
    assert "| prose | 4000 | 0.5 | 2048 | 20/20 | 100 [84, 100] | 15 x20 |" in table
    assert "fastkv" not in table and table.count("\n") == 3


def test_histogram_per_length_and_tau():
    records = [record(SHARED, i, 1.0, length=8000, layer=[17, 18, None][i % 3]) for i in range(6)]
    assert tables.selection_histograms(records) == {(8000, "0.3"): {17: 2, 18: 2, "none": 2}}
    assert "| 8000 | 0.3 | 6 | 17 x2, 18 x2, none x2 |" in tables.histogram_table(records)
