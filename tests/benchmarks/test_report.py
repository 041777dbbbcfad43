import json

from benchmarks import niah, report, ruler, serving
from benchmarks.results_file import ResultsFile


def needle_document(complete=True):
    records = []
    for i in range(20):
        for config, found in (
            ("none", True),
            ("asl,B=2048,heads=shared,k=2048,tau=0.3", True),
            ("asl,B=2048,heads=per-kv-head,k=2048,tau=0.3", i < 10),
        ):
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
            "requests": 120,
            "estimated_seconds": 700,
            "configs": [
                "none",
                "asl,B=2048,heads=shared,k=2048,tau=0.3",
                "asl,B=2048,heads=per-kv-head,k=2048,tau=0.3",
                "gemfilter",
            ],
        },
        "unavailable": {"gemfilter": "refused"},
        "records": records,
    }


def test_needle_targets_take_the_better_head_mode():
    text = niah.targets(needle_document()["records"])
    assert (
        "- ASL at B=2048 within 2 points of full KV: asl,B=2048,heads=shared,k=2048,tau=0.3 100 [84, 100] vs "
        "full KV 100 [84, 100], +0.0 (intervals overlap): met"
    ) in text
    assert "other mode asl,B=2048,heads=per-kv-head,k=2048,tau=0.3: 50 [30, 70]" in text
    assert "- ASL at B=1024: not measured" in text


def test_head_modes_are_compared_on_the_same_prompts():
    # Shared finds all 20, per-kv-head the first 10: 10 prompts where only shared finds it, none the other way.
    lines = niah.head_modes(needle_document()["records"])
    assert lines[1] == (
        "- asl,B=2048,heads=shared,k=2048,tau=0.3 vs asl,B=2048,heads=per-kv-head,k=2048,tau=0.3, same 20 prompts: "
        "only shared finds the needle on 10, only per-kv-head on 0; sign test p = 0.002"
    )
    assert niah.head_modes([r for r in needle_document()["records"] if "per-kv-head" not in r["config"]]) == []


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
    table = serving.serving_tables.load_table(records)
    assert (
        "| none | 4000 x 1 | 3 | 3.00 (2.00-4.00) | 1.00 | 30.0 (30.0-30.0) | 1.00 | 10.0 (10.0-10.0) | 1.00 |" in table
    )
    assert "| asl,B=1024 | 4000 x 1 | 3 | 1.50 (1.00-9.00) | 0.50 |" in table


def test_report_section_names_command_machine_and_a_partial_run(tmp_path):
    section = report.render({"niah": needle_document(complete=False)}, "python -m benchmarks.report --full", tmp_path)
    assert "Produced by `python -m benchmarks.report --full` on Test CPU, 2 cores, no GPU" in section
    assert (
        "`python -m benchmarks.niah --full`: PARTIAL: stopped after 60 of 90 results, 10 min 00 s "
        "(estimated 11 min 40 s for all)." in section
    )
    assert "| none | 100 [84, 100] (n=20) |" in section


def test_replace_section_keeps_the_rest_of_the_readme():
    readme = f"# Title\n{report.START}\nold\n{report.END}\n## Tests\n"
    assert report.replace_section(readme, "new") == f"# Title\n{report.START}\nnew\n{report.END}\n## Tests\n"


def test_results_file_resumes_only_the_same_settings(tmp_path):
    path = tmp_path / "niah.json"
    first = ResultsFile(path, "niah", {"lengths": [4000]}, {"requests": 2}, resume=False)
    first.add({"config": "none", "key": "p0", "score": 1.0})
    assert json.loads(path.read_text())["records"] == [{"config": "none", "key": "p0", "score": 1.0}]
    assert ResultsFile(path, "niah", {"lengths": [4000]}, {}, resume=True).done() == {("none", "p0")}
    assert ResultsFile(path, "niah", {"lengths": [8000]}, {}, resume=True).done() == set()
