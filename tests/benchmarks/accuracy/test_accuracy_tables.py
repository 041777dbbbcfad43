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


def test_selection_rate_counts_each_prompt_once_over_budget_configs():
    # Three budgets of the same tau and select-k on the same 10 prompts: n is 10, not 30.
    records = [
        record(f"asl,B={budget},k=2048,tau=0.3", i, 1.0, layer=17 if i < 2 else None)
        for budget in (512, 1024, 2048)
        for i in range(10)
    ]
    table = tables.selection_rate_table(records)
    assert "| noise | 4000 | 0.3 | 2048 | 2/10 | 20 [6, 51] | 17 x2, none x8 |" in table
    assert "| 4000 | 0.3 | 10 | 17 x2, none x8 |" in tables.histogram_table(records)


def test_selection_rate_reports_configs_that_disagree_on_a_prompt():
    records = [record("asl,B=1024,k=2048,tau=0.3", 0, 1.0, layer=17), record("asl,B=2048,k=2048,tau=0.3", 0, 1.0)]
    records.append(record("asl,B=512,k=2048,tau=0.3", 0, 1.0, layer=17))
    assert "| 1/1 | 100 [21, 100] | 17 x1; configs disagree on 1 |" in tables.selection_rate_table(records)


def unpruned(pruned):
    return {"decision": {"pruned": pruned}}


def test_paired_table_counts_prompts_signs_and_the_noise_floor():
    full = [record("none", i, 1.0, output=f"answer {i}", **unpruned(False)) for i in range(10)]
    # p0-p5 pruned nothing: p0-p3 answer as full KV does, p4-p5 differ in wording only (same score);
    # p6-p9 were pruned and p6-p8 lost the needle. p10 has no full-KV answer: not paired.
    mine = [record(SHARED, i, 1.0, output=f"answer {i}" if i < 4 else "other", **unpruned(False)) for i in range(6)]
    mine += [record(SHARED, i, float(i == 9), output="x", **unpruned(True)) for i in range(6, 11)]
    table = tables.paired_table(full + mine)
    assert f"| {SHARED} | 10 | 0 | 3 | 0.25 | 6 | 4/6 |" in table
    assert "| none |" not in table


def test_a_record_without_a_decision_report_is_not_counted_as_unpruned():
    assert not tables.pruned_nothing(record(SHARED, 0, 1.0))
    assert tables.pruned_nothing(record(SHARED, 0, 1.0, **unpruned(False)))
