"""The pruner registry: the one list every part of the plugin and the benchmarks reads."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from asl_vllm.cli_args import add_pruner_args
from asl_vllm.config import PrunerConfig, PrunerConfigError
from asl_vllm.pruners import Pruner, make_pruner
from asl_vllm.pruners.registry import PRUNERS, REGISTRY, with_capability
from asl_vllm.request_config import request_config
from benchmarks.common import configs as bench

ROOT = Path(__file__).resolve().parents[2]


def test_each_pruner_is_one_class_in_its_own_module():
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Pruner) and cls.name == name
        assert cls.__module__ == f"asl_vllm.pruners.{name}"
        assert (ROOT / "asl_vllm" / "pruners" / f"{name}.py").is_file()


def test_cli_choices_are_the_registry():
    parser = add_pruner_args(argparse.ArgumentParser())
    (action,) = [action for action in parser._actions if "--kv-pruner" in action.option_strings]
    assert tuple(action.choices) == PRUNERS
    assert all(f"{name}: {REGISTRY[name].summary}" in action.help for name in PRUNERS)


def test_an_unknown_pruner_is_refused_alike_by_config_and_per_request():
    choices = ", ".join(PRUNERS)
    with pytest.raises(PrunerConfigError) as by_config:
        PrunerConfig(pruner="h2o").validate()
    assert str(by_config.value) == f"--kv-pruner: unknown pruner 'h2o'; choose one of {choices}"
    with pytest.raises(PrunerConfigError) as by_request:
        request_config(PrunerConfig(pruner="asl"), {"kv_pruner": "h2o"})
    assert str(by_request.value) == f"kv_pruner: unknown pruner 'h2o'; choose one of {choices}"


def test_capabilities_drive_the_messages():
    assert with_capability("reference_fixed_layer") == ("fastkv", "gemfilter")
    assert with_capability("two_pass_option") == ("asl",)
    assert set(with_capability("needs_budget")) == {"snapkv", "pyramidkv"}
    with pytest.raises(PrunerConfigError, match="--fixed-layer: applies only to --kv-pruner fastkv or gemfilter"):
        PrunerConfig(pruner="pyramidkv", kv_budget=64, fixed_layer=3).validate()
    with pytest.raises(PrunerConfigError, match="--kv-budget: --kv-pruner pyramidkv needs a budget"):
        PrunerConfig(pruner="pyramidkv").validate()


def test_every_pruner_config_makes_an_instance_of_its_own_class():
    for name, cls in REGISTRY.items():
        config = PrunerConfig(pruner=name, kv_budget=64 if cls.prunes else None).resolve(30)
        if cls.prunes:
            assert type(make_pruner(config)) is cls
        else:
            with pytest.raises(ValueError, match="no pruner class for pruner"):
                make_pruner(config)


def test_benchmark_pruner_lists_come_from_the_registry():
    assert set(REGISTRY) <= set(bench.PRUNERS)
    assert set(bench.PRUNERS) - set(REGISTRY) == {"asl-2pass"}
    assert "pyramidkv" in bench.SHARED_PRUNERS and "gemfilter" not in bench.SHARED_PRUNERS
    assert bench.ADAPTIVE_PRUNERS == ("asl", "asl-2pass")


def test_no_code_compares_a_pruner_name_outside_its_class():
    names = "|".join(PRUNERS)
    comparison = re.compile(rf"""pruner\w*\s*(==|!=|in|not in)\s*\(?["']({names})["']""")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("asl_vllm", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if comparison.search(line)
    ]
    assert found == []
