from collections import Counter

import pytest

from benchmarks.accuracy.ruler_tasks import NIAH_NEEDLE, TASKS, fit

TARGET = 1500
# One haystack unit (a noise paragraph, a UUID needle) is at most this many tokens.
SLACK = 80


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return {name: fit(task, tokenizer, TARGET, seed=0) for name, task in TASKS.items()}


@pytest.mark.parametrize("name", list(TASKS))
def test_length_hits_the_target(prompts, name):
    assert TARGET - SLACK <= len(prompts[name].token_ids) <= TARGET


@pytest.mark.parametrize("name", list(TASKS))
def test_every_answer_is_in_the_prompt(prompts, tokenizer, name):
    text = tokenizer.decode(prompts[name].token_ids)
    assert prompts[name].answers
    for answer in prompts[name].answers:
        assert answer in text


def test_answer_counts_follow_ruler(prompts):
    assert len(prompts["niah_multivalue"].answers) == 4
    assert len(prompts["niah_multiquery"].answers) == 4
    assert len(prompts["vt"].answers) == 5
    assert len(prompts["cwe"].answers) == 10
    assert len(prompts["fwe"].answers) == 3


def test_multikey_hides_distractor_needles(prompts, tokenizer):
    text = tokenizer.decode(prompts["niah_multikey_1"].token_ids)
    assert text.count("One of the special magic numbers for") == 4
    # multikey_3: the haystack itself is UUID needles; only one carries the asked key.
    text3 = tokenizer.decode(prompts["niah_multikey_3"].token_ids)
    assert text3.count(NIAH_NEEDLE.split("{")[0]) > 10


def test_common_and_frequent_words_are_the_most_frequent(prompts, tokenizer):
    cwe = tokenizer.decode(prompts["cwe"].token_ids).rsplit("Below is a numbered list", 1)[1]
    counts = Counter(word for word in cwe.split() if word.isalpha())
    least_common = min(counts[word] for word in prompts["cwe"].answers)
    others = [count for word, count in counts.items() if word not in prompts["cwe"].answers and word.islower()]
    assert least_common > max(others, default=0) - 0  # strictly more often than any uncommon word
    fwe = Counter(tokenizer.decode(prompts["fwe"].token_ids).split())
    top = [word for word, _ in fwe.most_common(4) if word != "..."][:3]
    assert sorted(top) == sorted(prompts["fwe"].answers)


def test_same_seed_same_prompt_other_index_other_needles(tokenizer):
    task = TASKS["niah_single_3"]
    first, again, other = fit(task, tokenizer, 800, 1), fit(task, tokenizer, 800, 1), fit(task, tokenizer, 800, 1, 1)
    assert first.token_ids == again.token_ids
    assert first.answers != other.answers


def test_too_short_target_is_refused(tokenizer):
    with pytest.raises(ValueError, match="too few"):
        fit(TASKS["vt"], tokenizer, 200, seed=0)
