"""`asl-vllm-serve` builds `vllm serve` with its defaults, letting the user's flags win."""

from asl_vllm.serve_embedded import banner, build_command


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


def test_banner_names_the_model_the_pruner_and_where_to_connect():
    lines = banner(build_command("/cache/SmolLM2", ["--kv-budget=512", "--port", "8001"]))
    assert (
        lines[0]
        == "asl-vllm: model:  SmolLM2-135M-Instruct (embedded) at /cache/SmolLM2, served as 'smollm2-135m-instruct'"
    )
    assert lines[1].startswith("asl-vllm: pruner: --kv-pruner asl --kv-budget 512 (")
    assert lines[2] == (
        "asl-vllm: listen: 127.0.0.1:8001; OpenAI API at http://127.0.0.1:8001/v1, "
        "health at http://127.0.0.1:8001/health"
    )
    assert all(line.startswith("asl-vllm: ") for line in lines)


def test_banner_on_all_interfaces_gives_a_local_address_to_connect_to():
    lines = banner(build_command("/m", ["--host", "0.0.0.0", "--kv-pruner", "snapkv", "--asl-two-pass"]))
    assert "--kv-pruner snapkv --asl-two-pass (" in lines[1]
    assert lines[2].startswith(
        "asl-vllm: listen: 0.0.0.0:8000 (all interfaces); OpenAI API at http://127.0.0.1:8000/v1"
    )
