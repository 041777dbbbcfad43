"""The serving benchmark's order (servers and configs take turns, each config warms up, all get the same
prompts) and its KV table (KV read after the first token, kept tokens from the decision report)."""

from types import SimpleNamespace

from benchmarks.common.configs import parse
from benchmarks.serving import performance, tables


class Results:
    def __init__(self):
        self.records = []

    def done(self):
        return set()

    def add(self, record):
        self.records.append(record)


def test_servers_and_configs_take_turns_on_the_same_prompts(monkeypatch):
    sent = []
    monkeypatch.setattr(
        performance, "wave", lambda url, prompts, tokens, xargs: sent.append((url, xargs, prompts, tokens)) or _wave()
    )
    monkeypatch.setattr(performance, "_kv", lambda *args: {"kind": "kv"})
    monkeypatch.setattr(performance, "_capacity", lambda *args: {"kind": "capacity"})
    base, shared = SimpleNamespace(url="vllm"), SimpleNamespace(url="pruning")
    servers = [(base, {}, [parse("none")]), (shared, {"kv_pruner": "asl"}, [parse("asl,B=1024"), parse("fastkv")])]
    args = SimpleNamespace(lengths=[100], concurrency=[2], repeats=2, output_tokens=8, capacity_length=100)

    def make(length, tag):
        return [length, tag]

    results = Results()
    performance.measure(servers, args, make, results, pool=1)
    warm_ups, waves = sent[:3], sent[3:]
    assert [(url, xargs.get("kv_pruner"), tokens) for url, xargs, _, tokens in warm_ups] == [
        ("vllm", None, 2),
        ("pruning", "asl", 2),
        ("pruning", "fastkv", 2),
    ]
    assert len({prompts[0][1] for _, _, prompts, _ in warm_ups}) == 3  # each config's own warm-up prompt
    assert [(url, xargs.get("kv_pruner")) for url, xargs, _, _ in waves] == [
        ("vllm", None),
        ("pruning", "asl"),
        ("pruning", "fastkv"),
    ] * 2
    assert all(prompts == waves[0][2] for _, _, prompts, _ in waves[:3])
    assert all(prompts == waves[3][2] for _, _, prompts, _ in waves[3:]) and waves[0][2] != waves[3][2]
    assert [r["repeat"] for r in results.records if r["kind"] == "load"] == [0, 0, 0, 1, 1, 1]


def _wave():
    return SimpleNamespace(ttft_s=1.0, tpot_s=0.02, tokens_per_s=5.0)


def test_kv_table_shows_the_reports_kept_tokens_and_a_missing_reading():
    report = {"kept_tokens": 1056, "prompt_tokens": 4000}
    records = [
        {"config": "none", "kind": "kv", "length": 4000, "kv_bytes": 64 * 2**20, "report": None},
        {"config": "asl,B=1024", "kind": "kv", "length": 4000, "kv_bytes": 16 * 2**20, "report": report},
        {"config": "fastkv", "kind": "kv", "length": 4000, "kv_bytes": None, "report": None},
    ]
    table = tables.memory_table(records)
    assert "| none | 4000 | 64.0 | 1.00 | - | - | - | - |" in table
    assert "| asl,B=1024 | 4000 | 16.0 | 0.25 | 1,056 / 4,000 | - | - | - |" in table
    assert "| fastkv | 4000 | - | - | - | - | - | - |" in table
