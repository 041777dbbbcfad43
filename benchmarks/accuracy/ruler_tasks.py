"""RULER's synthetic tasks, generated offline to a target prompt length.

Follows the generation rules of NVIDIA/RULER `scripts/data/synthetic` (niah.py,
variable_tracking.py, common_words_extraction.py, freq_words_extraction.py and
`synthetic.yaml`): the same templates, answer prefixes, needle sentences, value
kinds (7-digit numbers, adjective-noun words, UUID4s), insertion depths and
frequencies. Two substitutions keep it offline: the essay haystack is CPython's
documentation prose instead of Paul Graham's essays, and the common words come
from wonderwords' noun list instead of RULER's English word list. The size of
each sample (haystack sentences, words) is searched, as in RULER, for the largest
prompt that fits the target token count in the model's chat template.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.chat_prompt import chat_prompt
from harness.text_sources import NOISE, haystack_text, nouns, random_value

NIAH_TEMPLATE = (
    "Some special magic {type_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_v} afterwards.\n{context}\n"
    "What are all the special magic {type_v} for {query} mentioned in the provided text?"
)
NIAH_ANSWER = " The special magic {type_v} for {query} mentioned in the provided text are"
NIAH_NEEDLE = "One of the special magic {type_v} for {key} is: {value}."
VT_TEMPLATE = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above."
)
VT_ANSWER = (
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
    "assigned the value {query}, they are: "
)
CWE_TEMPLATE = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n{context}\n"
    "Question: What are the 10 most common words in the above list?"
)
CWE_ANSWER = " Answer: The top 10 words that appear most often in the list are:"
FWE_TEMPLATE = (
    "Read the following coded text and track the frequency of each coded word. Find the three most "
    "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore "
    "the dots '....'. What are the three most frequently appeared words in the above coded text?"
)
FWE_ANSWER = " Answer: According to the coded text above, the three most frequently appeared words are:"
# RULER's 40 insertion depths (percent) for needles in the essay haystack.
DEPTHS = [round(100 * i / 39) for i in range(40)]


@dataclass(frozen=True)
class Sample:
    user_text: str
    answer_prefix: str
    answers: list[str]


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # niah, vt, cwe, fwe: how it is scored and reported
    tokens_to_generate: int
    make: Callable[[int, random.Random, int], Sample]  # (size, rng, target tokens) -> sample
    haystack: str  # what the context is made of: noise, prose, needles, words
    values: int = 1  # answer strings a sample has


@dataclass(frozen=True)
class Prompt:
    task: str
    index: int
    token_ids: list[int]
    answers: list[str]
    size: int


def _sentences(text: str) -> list[str]:
    return [part for part in re.split(r"(?<=[.!?])\s+", text.strip()) if part]


def _niah(haystack: str, type_k: str, type_v: str, num_k: int = 1, num_v: int = 1, num_q: int = 1):
    num_k = max(num_k, num_q)

    def make(size: int, rng: random.Random, _target: int) -> Sample:
        keys, values, needles = [], [], []
        for _ in range(num_k):
            keys.append(random_value(type_k, rng))
            values.append([random_value(type_v, rng) for _ in range(num_v)])
            needles += [NIAH_NEEDLE.format(type_v=type_v + "s", key=keys[-1], value=v) for v in values[-1]]
        rng.shuffle(needles)
        if haystack == "prose":
            sentences = _sentences(haystack_text("prose", size))
            depths = sorted(int(len(sentences) * depth / 100) for depth in rng.sample(DEPTHS, len(needles)))
            parts, last = [], 0
            for position, needle in zip(depths, needles, strict=True):
                parts += [" ".join(sentences[last:position]), needle]
                last = position
            context = " ".join(part for part in [*parts, " ".join(sentences[last:])] if part)
        else:
            if haystack == "noise":
                sentences = [NOISE] * size
            else:  # "needle": the haystack is made of distractor needles
                sentences = [
                    NIAH_NEEDLE.format(
                        type_v=type_v + "s", key=random_value(type_k, rng), value=random_value(type_v, rng)
                    )
                    for _ in range(size)
                ]
            for index, needle in zip(sorted(rng.sample(range(size), len(needles)), reverse=True), needles, strict=True):
                sentences.insert(index, needle)
            context = "\n".join(sentences)
        queries = [keys[i] for i in rng.sample(range(num_k), num_q)]
        answers = [value for key in queries for value in values[keys.index(key)]]
        query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
        template, prefix, type_name = NIAH_TEMPLATE, NIAH_ANSWER, type_v + "s"
        if num_q * num_v == 1:  # RULER's singular wording
            template = template.replace("Some", "A").replace("are all", "is").replace("are", "is")
            prefix = prefix.replace("are", "is")
            type_name = type_v
        return Sample(
            template.format(type_v=type_name, context=context, query=query),
            prefix.format(type_v=type_name, query=query),
            answers,
        )

    return make


def _vt_text(num_noises: int, rng: random.Random, var_len: int, hops: int = 4) -> tuple[str, str, list[str]]:
    """(question, answer prefix, the chain's variable names) for one chain in `num_noises` noise lines."""
    names: list[str] = []
    while len(names) < hops + 1:
        name = "".join(rng.choices(string.ascii_uppercase, k=var_len))
        if name not in names:
            names.append(name)
    value = str(rng.randint(10000, 99998))
    chain = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(hops)]
    sentences = [NOISE] * num_noises
    for offset, position in enumerate(sorted(rng.sample(range(num_noises), len(chain)))):
        sentences.insert(position + offset, chain[offset])
    context = "\n".join(sentences).replace(". \n", ".\n")
    return VT_TEMPLATE.format(context=context, query=value), VT_ANSWER.format(num_v=hops + 1, query=value), names


def _vt(size: int, rng: random.Random, _target: int) -> Sample:
    """Variable tracking, one chain of 4 hops in noise, after one solved example (RULER's ICL)."""
    example, example_prefix, example_names = _vt_text(5, rng, var_len=3)
    question, prefix, names = _vt_text(size, rng, var_len=5)
    return Sample(example + example_prefix + " ".join(example_names) + "\n\n" + question, prefix, names)


def _cwe_list(
    words: list[str], common_repeats: int, uncommon_repeats: int, rng: random.Random
) -> tuple[str, list[str]]:
    common, uncommon = words[:10], words[10:]
    listed = common * common_repeats + uncommon * uncommon_repeats
    rng.shuffle(listed)
    return " ".join(f"{i + 1}. {word}" for i, word in enumerate(listed)), common


def _cwe(size: int, rng: random.Random, target: int) -> Sample:
    """Common words: 10 words repeated often among `size` words, after one solved example."""
    vocabulary = list(nouns())
    small = target < 4096  # RULER's lighter repeats below 4k tokens
    example_size, example_repeats, repeats = (20, (3, 1), (6, 1)) if small else (40, (10, 3), (30, 3))
    example, example_answer = _cwe_list(rng.sample(vocabulary, example_size), *example_repeats, rng)
    context, answers = _cwe_list(rng.sample(vocabulary, min(size, len(vocabulary))), *repeats, rng)
    solved = " ".join(f"{i + 1}. {word}" for i, word in enumerate(example_answer))
    shot = CWE_TEMPLATE.format(context=example) + CWE_ANSWER + " " + solved
    return Sample(shot + "\n" + CWE_TEMPLATE.format(context=context), CWE_ANSWER, answers)


def _zeta(alpha: float, terms: int = 100_000) -> float:
    """Riemann zeta for alpha > 1: partial sum plus the integral of the tail."""
    return sum(k**-alpha for k in range(1, terms)) + terms ** (1 - alpha) / (alpha - 1)


def _fwe(size: int, rng: random.Random, target: int, alpha: float = 2.0, word_len: int = 6) -> Sample:
    """Frequent words: Zipf-distributed coded words; the top one is '...' noise, answers ranks 2-4."""
    vocab_size = max(target // 50, 8)
    vocab: set[str] = set()
    while len(vocab) < vocab_size:
        vocab.add("".join(rng.choices(string.ascii_lowercase, k=word_len)))
    ordered = sorted(vocab)
    rng.shuffle(ordered)
    ordered[0] = "..."
    zeta = _zeta(alpha)
    words = [word for rank, word in enumerate(ordered, 1) for _ in range(int(size * rank**-alpha / zeta))]
    rng.shuffle(words)
    return Sample(FWE_TEMPLATE.format(context=" ".join(words)), FWE_ANSWER, ordered[1:4])


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("niah_single_1", "niah", 128, _niah("noise", "word", "number"), "noise"),
        Task("niah_single_2", "niah", 128, _niah("prose", "word", "number"), "prose"),
        Task("niah_single_3", "niah", 128, _niah("prose", "word", "uuid"), "prose"),
        Task("niah_single_word", "niah", 128, _niah("prose", "word", "word"), "prose"),
        Task("niah_multikey_1", "niah", 128, _niah("prose", "word", "number", num_k=4), "prose"),
        Task("niah_multikey_2", "niah", 128, _niah("needle", "word", "number"), "needles"),
        Task("niah_multikey_3", "niah", 128, _niah("needle", "uuid", "uuid"), "needles"),
        Task("niah_multivalue", "niah", 128, _niah("prose", "word", "number", num_v=4), "prose", 4),
        Task("niah_multiquery", "niah", 128, _niah("prose", "word", "number", num_q=4), "prose", 4),
        Task("vt", "vt", 30, _vt, "noise", 5),
        Task("cwe", "cwe", 120, _cwe, "words", 10),
        Task("fwe", "fwe", 50, _fwe, "words", 3),
    )
}


def fit(task: Task, tokenizer: Any, num_tokens: int, seed: int, index: int = 0) -> Prompt:
    """The sample of the largest size whose chat prompt has at most `num_tokens` tokens.

    The same (seed, index) gives the same needles at every size, so the search is monotone
    up to tokenization noise, as in RULER's binary search.
    """

    def build(size: int) -> tuple[list[int], Sample]:
        sample = task.make(size, random.Random(f"{seed}-{task.name}-{index}"), num_tokens)
        return chat_prompt(tokenizer, sample.user_text, sample.answer_prefix), sample

    low, high = _minimum_size(task), _minimum_size(task)
    while len(build(high)[0]) <= num_tokens:
        low, high = high, high * 2
    if low == high:
        raise ValueError(f"{task.name}: {num_tokens} tokens are too few for its smallest sample")
    while high - low > 1:  # invariant: build(low) fits, build(high) does not
        middle = (low + high) // 2
        low, high = (middle, high) if len(build(middle)[0]) <= num_tokens else (low, middle)
    token_ids, sample = build(low)
    return Prompt(task.name, index, token_ids, sample.answers, low)


def _minimum_size(task: Task) -> int:
    """The smallest size a task's generator accepts (room for its needles, chain or answer words)."""
    return {"niah": 4, "vt": 5, "cwe": 12, "fwe": 64}[task.kind]
