"""`asl-vllm-serve` builds `vllm serve` with its defaults, letting the user's flags win."""

from asl_vllm.serve_embedded import build_command


def test_defaults_when_nothing_is_given():
    command = build_command("/m", [])
    assert command[:3] == ["vllm", "serve", "/m"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options["--kv-pruner"] == "asl"
    assert options["--host"] == "127.0.0.1"
    assert options["--port"] == "8000"


def test_user_flags_override_defaults_in_both_spellings():
    command = build_command("/m", ["--port=8001", "--kv-pruner", "snapkv", "--kv-budget", "512"])
    assert command.count("--port") == 1 and command[command.index("--port") + 1] == "8001"
    assert command.count("--kv-pruner") == 1 and command[command.index("--kv-pruner") + 1] == "snapkv"
    assert command[-2:] == ["--kv-budget", "512"]
