import random

import pytest

from harness.chat_prompt import needle_prompt
from harness.text_sources import haystack_text, random_value


@pytest.mark.parametrize("haystack", ["noise", "prose"])
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_exact_length_needle_inside(tokenizer, haystack, depth):
    value = random_value("uuid", random.Random(0))
    ids = needle_prompt(
        tokenizer,
        1000,
        haystack_text(haystack, 1000),
        f"The special magic UUID is: {value}.",
        depth,
        "What is the special magic UUID?",
        "The special magic UUID is",
        at_sentence=True,
    )
    assert len(ids) == 1000
    text = tokenizer.decode(ids)
    assert value in text
    position = text.index(value) / len(text)
    assert abs(position - depth) < 0.15


def test_depth_out_of_range_refused(tokenizer):
    with pytest.raises(ValueError, match="depth"):
        needle_prompt(tokenizer, 500, haystack_text("noise", 500), "x", 1.5, "q", "a")


def test_prose_is_real_text():
    words = haystack_text("prose", 2000).split()
    assert len(words) == 2000
    assert len(set(words)) > 500  # not a repeated sentence
