"""Each pruner setting is declared once; its flag, help, range and request key come from that declaration."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from asl_vllm.cli_args import add_pruner_args
from asl_vllm.config import PrunerConfig, PrunerConfigError
from asl_vllm.pruners.base import Pruner
from asl_vllm.pruners.registry import PRUNERS, REGISTRY, with_capability
from asl_vllm.request_config import request_config
from asl_vllm.settings import FLAGS, SETTINGS, Setting, setting

ROOT = Path(__file__).resolve().parents[1]
SERVER = PrunerConfig(pruner="asl", kv_budget=1024).resolve(30)


def _parser(config_class: type[PrunerConfig] = PrunerConfig) -> argparse.ArgumentParser:
    return add_pruner_args(argparse.ArgumentParser(), config_class)


def _parse_error(parser: argparse.ArgumentParser, args: list[str]) -> str:
    stderr = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stderr(stderr):
        parser.parse_args(args)
    return stderr.getvalue()


def test_importing_the_settings_imports_neither_torch_nor_a_pruner():
    script = (
        "import json, sys, asl_vllm.settings; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'vllm') "
        "or m.startswith(('asl_vllm.pruners', 'asl_vllm.config', 'asl_vllm.scoring')))))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_each_flag_is_its_declaration():
    actions = {action.option_strings[0]: action for action in _parser()._actions}
    for name, declared in SETTINGS.items():
        action = actions[declared.flag]
        assert FLAGS[name] == declared.flag
        assert action.dest == declared.dest and action.default == declared.default
        assert action.help.startswith(declared.help)
        if declared.derived_default is not None:
            assert f"Default: {declared.derived_default.replace('`', '')}." in action.help
        if declared.names_pruner:
            assert tuple(action.choices) == PRUNERS
        elif declared.kind is str:
            assert tuple(action.choices) == declared.words
        elif declared.kind is not bool:
            assert action.metavar == declared.metavar


def _numeric_settings() -> list[Setting]:
    return [
        declared for declared in SETTINGS.values() if declared.kind in (int, float) and declared.minimum is not None
    ]


@pytest.mark.parametrize("declared", _numeric_settings(), ids=lambda declared: declared.flag)
def test_the_declared_range_is_checked_alike_by_flag_and_config(declared):
    below = declared.minimum - (1 if declared.kind is int else 0.5)
    message = declared.problem(below)
    assert message
    assert f"argument {declared.flag}: {message}" in _parse_error(_parser(), [declared.flag, str(below)])
    with pytest.raises(PrunerConfigError) as refused:
        PrunerConfig(pruner="asl", **{declared.name: below}).validate()
    assert str(refused.value) == f"{declared.flag}: {message}"


def test_request_keys_are_the_declared_ones():
    declared_keys = {declared.request_key for declared in SETTINGS.values() if declared.request_key}
    for key in declared_keys:
        with pytest.raises(PrunerConfigError) as refused:
            request_config(SERVER, {key: "not a value"})
        assert refused.value.flag == key
    unrequestable = [declared.dest for declared in SETTINGS.values() if not declared.request_key]
    assert request_config(SERVER, dict.fromkeys(unrequestable, 3)) is SERVER


def test_capabilities_name_pruner_attributes():
    for declared in SETTINGS.values():
        if declared.capability is not None:
            assert hasattr(Pruner, declared.capability) and with_capability(declared.capability)
    fixed_layer = SETTINGS["fixed_layer"].derived_default
    for name in with_capability("reference_fixed_layer"):
        assert f"{REGISTRY[name].reference_fixed_layer} ({name})" in fixed_layer


@dataclass(frozen=True)
class WithExtra(PrunerConfig):
    """The pruner config with one more setting, declared only here."""

    asl_extra: int = setting(
        5,
        "--asl-extra",
        "A setting only this test declares.",
        metavar="X",
        request_key="asl_extra",
        minimum=1,
        maximum=9,
    )


def test_a_new_declaration_shows_up_in_the_flags_requests_and_checks():
    parser = _parser(WithExtra)
    assert parser.parse_args(["--asl-extra", "7"]).asl_extra == 7
    assert "argument --asl-extra: must be >= 1, got 0" in _parse_error(parser, ["--asl-extra", "0"])
    assert "A setting only this test declares." in parser.format_help()
    with pytest.raises(PrunerConfigError, match=r"^--asl-extra: must be <= 9, got 10$"):
        WithExtra(pruner="asl", asl_extra=10).validate()
    with pytest.raises(PrunerConfigError, match=r"^--asl-extra: has no effect without --kv-pruner$"):
        WithExtra(asl_extra=3).validate()
    server = WithExtra(pruner="asl").resolve(30)
    assert request_config(server, {"asl_extra": 3}).asl_extra == 3
    with pytest.raises(PrunerConfigError, match=r"^asl_extra: must be an integer, got 'x'$"):
        request_config(server, {"asl_extra": "x"})
    with pytest.raises(PrunerConfigError, match=r"^asl_extra: must be <= 9, got 10$"):
        request_config(server, {"asl_extra": 10})


def _readme_flags_table() -> list[list[str]]:
    section = (ROOT / "README.md").read_text().split("## Flags", 1)[1]
    table = section.split("| flag | default | meaning |", 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in table.strip().splitlines()[1:]]


def test_the_readme_flags_table_is_the_declarations():
    expected = []
    for declared in SETTINGS.values():
        if declared.names_pruner:
            usage = f"{declared.flag} {{{','.join(PRUNERS)}}}"
        elif declared.kind is str:
            usage = f"{declared.flag} {{{','.join(declared.words)}}}"
        elif declared.kind is bool:
            usage = declared.flag
        else:
            usage = f"{declared.flag} {declared.metavar}"
        expected.append([f"`{usage}`", declared.shown_default])
    assert [row[:2] for row in _readme_flags_table()] == expected


def test_the_readme_lists_every_request_key():
    text = (ROOT / "README.md").read_text()
    paragraph = text.split("Per request, `SamplingParams.extra_args`", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`(\w+)`", paragraph))
    assert {declared.request_key for declared in SETTINGS.values() if declared.request_key} <= documented
