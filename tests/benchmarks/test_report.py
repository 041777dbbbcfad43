import json

from benchmarks import report
from benchmarks.accuracy import niah, ruler
from benchmarks.common.results_file import ResultsFile
from benchmarks.serving import tables as serving_tables

SHARED = "asl,B=2048,heads=shared,layers=shared,k=2048,tau=0.3"
PER_LAYER = "asl,B=2048,heads=shared,layers=per-layer,k=2048,tau=0.3"
PER_HEAD = "asl,B=2048,heads=per-kv-head,layers=per-layer,k=2048,tau=0.3"


def needle_document(complete=True):
    # Of 20 prompts, full KV and the layer-shared rule find all, the per-layer shared-heads rule the
    # first 15, the per-kv-head rule the first 10.
    records = []
    for i in range(20):
        for config, found in (("none", True), (SHARED, True), (PER_LAYER, i < 15), (PER_HEAD, i < 10)):
            records.append(
                {
                    "config": config,
                    "key": f"p{i}",
                    "length": 4000,
                    "haystack": "noise",
                    "depth": 0.5,
                    "score": float(found),
                    "selection_layer": None,
                }
            )
    return {
        "benchmark": "niah",
        "complete": complete,
        "wall_seconds": 600.0,
        "machine": {"cpu": "Test CPU", "cores": 2, "gpus": [], "vllm": "vllm 0.32.0", "python": "3.11"},
        "settings": {
            "out": "docs/benchmark-results/full/niah",
            "model": None,
            "lengths": [4000],
            "haystacks": ["noise"],
            "depths": [0.5],
            "per_cell": 20,
            "full": True,
        },
        "plan": {
            "cells": niah.CELLS,
            "requests": 160,
            "estimated_seconds": 700,
            "configs": ["none", SHARED, PER_LAYER, PER_HEAD, "gemfilter"],
        },
        "unavailable": {"gemfilter": "refused"},
        "records": records,
    }


def test_needle_targets_take_the_best_budget_rule():
    text = niah.targets(needle_document()["records"])
    assert (
        f"- ASL at B=2048 within 2 points of full KV: {SHARED} 100 [84, 100] vs "
        "full KV 100 [84, 100], +0.0 (intervals overlap): met"
    ) in text
    assert f"other rules {PER_LAYER}: 75 [53, 89]; {PER_HEAD}: 50 [30, 70]" in text
    assert "- ASL at B=1024: not measured" in text


def test_budget_rules_differing_in_one_setting_are_compared_on_the_same_prompts():
    lines = niah.budget_rules(needle_document()["records"])
    assert lines[1:3] == [
        f"- heads: {PER_LAYER} vs {PER_HEAD}, same 20 prompts: only heads=shared finds the needle on 5, "
        "only heads=per-kv-head on 0; sign test p = 0.062",
        f"- layers: {SHARED} vs {PER_LAYER}, same 20 prompts: only layers=shared finds the needle on 5, "
        "only layers=per-layer on 0; sign test p = 0.062",
    ]
    assert len(lines) == 4  # the heading, the two pairs, a blank line: SHARED and PER_HEAD differ in two settings
    assert niah.budget_rules([r for r in needle_document()["records"] if r["config"] in ("none", SHARED)]) == []


def test_ruler_targets_compare_asl_with_fixed_layer_peers_at_equal_select_k():
    records = []
    for i in range(20):
        for config, found in (("asl,k=1024,tau=0.5", i < 15), ("fastkv,k=1024", i < 5), ("gemfilter,k=2048", True)):
            records.append(
                {"config": config, "key": f"p{i}", "task": "niah_multikey_1", "length": 4000, "score": float(found)}
            )
    text = ruler.targets(records, ["niah_multikey_1"])
    assert "- niah_multikey_1: asl,k=1024,tau=0.5 75 [53, 89] vs fastkv,k=1024 25 [11, 47], +50.0 (higher): met" in text
    assert "gemfilter,k=2048" not in text  # another select-k: not comparable


def test_serving_medians_and_ratios_to_vllm_default_mode():
    records = []
    for repeat, (base, mine) in enumerate(((2.0, 1.0), (4.0, 1.5), (3.0, 9.0))):
        for config, ttft in (("none", base), ("asl,B=1024", mine)):
            records.append(
                {
                    "config": config,
                    "key": f"load/{repeat}",
                    "kind": "load",
                    "length": 4000,
                    "clients": 1,
                    "repeat": repeat,
                    "ttft_s": ttft,
                    "tpot_s": 0.03,
                    "tokens_per_s": 10.0,
                }
            )
    table = serving_tables.load_table(records)
    assert (
        "| none | 4000 x 1 | 3 | 3.00 (2.00-4.00) | 1.00 | 30.0 (30.0-30.0) | 1.00 | 10.0 (10.0-10.0) | 1.00 |" in table
    )
    assert "| asl,B=1024 | 4000 x 1 | 3 | 1.50 (1.00-9.00) | 0.50 |" in table


def test_report_section_names_command_machine_and_a_partial_run(tmp_path):
    section = report.render({"niah": needle_document(complete=False)}, "python -m benchmarks.report --full", tmp_path)
    assert "Produced by `python -m benchmarks.report --full` on Test CPU, 2 cores, no GPU" in section
    assert (
        "`python -m benchmarks.accuracy.niah --full`: PARTIAL: stopped after 80 of 128 results, 10 min 00 s "
        "(estimated 11 min 40 s for all)." in section
    )
    assert "| none | 100 [84, 100] (n=20) |" in section


def test_report_marks_a_results_file_older_than_a_default_it_depends_on(tmp_path):
    document = needle_document()
    document["plan"]["configs"].append("asl,B=1024,k=2048,tau=0.3")  # runs on --kv-budget-layers's default
    document |= {"commit": "0" * 40, "commit_date": "2026-11-01T00:00:00+00:00"}
    section = report.render({"niah": document}, "python -m benchmarks.report --full", tmp_path)
    assert "**STALE** `python -m benchmarks.accuracy.niah --full`: measured at commit 0000000" in section
    assert "--kv-budget-layers's default changed" in section and "| none |" in section
    document["commit_date"] = "2026-12-05T00:00:00+00:00"
    section = report.render({"niah": document}, "python -m benchmarks.report --full", tmp_path)
    assert "STALE" not in section
    assert "`python -m benchmarks.accuracy.niah --full` at commit 0000000: 10 min 00 s" in section


def test_replace_section_keeps_the_rest_of_the_readme():
    readme = f"# Title\n{report.START}\nold\n{report.END}\n## Tests\n"
    assert report.replace_section(readme, "new") == f"# Title\n{report.START}\nnew\n{report.END}\n## Tests\n"


def test_results_file_resumes_only_the_same_settings(tmp_path):
    path = tmp_path / "niah.json"
    first = ResultsFile(path, "niah", {"lengths": [4000]}, {"requests": 2}, resume=False)
    first.add({"config": "none", "key": "p0", "score": 1.0})
    written = json.loads(path.read_text())
    assert written["records"] == [{"config": "none", "key": "p0", "score": 1.0}]
    assert {"commit", "commit_date", "dirty", "settings", "machine"} <= written.keys()
    assert ResultsFile(path, "niah", {"lengths": [4000]}, {}, resume=True).done() == {("none", "p0")}
    assert ResultsFile(path, "niah", {"lengths": [8000]}, {}, resume=True).done() == set()
    path.write_text(json.dumps({**written, "commit": "another"}))
    assert ResultsFile(path, "niah", {"lengths": [4000]}, {}, resume=True).done() == set()
