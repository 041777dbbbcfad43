"""Offline text for the accuracy benchmarks: haystacks, word lists and needle values.

Nothing is downloaded. Haystacks are either RULER's repeated noise sentences or
English prose: the reference documentation shipped with CPython itself
(`pydoc_data.topics`), with its code blocks and grammar rules left out. Words for
keys come from the lists the `wonderwords` package ships (as RULER uses them).
"""

from __future__ import annotations

import functools
import random
import re
import uuid
from importlib import resources

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
HAYSTACK_KINDS = ("noise", "prose")
NEEDLE_KINDS = ("number", "word", "uuid")


@functools.lru_cache(maxsize=1)
def prose_words() -> tuple[str, ...]:
    """The words of CPython's documentation prose, in order (about 40k words)."""
    from pydoc_data.topics import topics

    paragraphs = []
    for name in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[name]):
            lines = paragraph.splitlines()
            # Keep plain paragraphs: no indented code, no grammar rules, no heading underlines.
            if not lines or any(line.startswith(" ") for line in lines) or "::=" in paragraph:
                continue
            if re.fullmatch(r"[*=\-~^]+", lines[-1].strip()) or not paragraph.rstrip().endswith((".", ":")):
                continue
            paragraphs.append(" ".join(lines))
    return tuple(" ".join(paragraphs).split())


def haystack_text(kind: str, num_words: int) -> str:
    """About `num_words` words of haystack of the given kind (prose repeats when it runs out)."""
    if kind == "noise":
        unit = NOISE.split()
    elif kind == "prose":
        unit = list(prose_words())
    else:
        raise ValueError(f"unknown haystack kind {kind!r} (known: {', '.join(HAYSTACK_KINDS)})")
    repeats = -(-num_words // len(unit))
    return " ".join((unit * repeats)[:num_words])


@functools.lru_cache(maxsize=2)
def _word_list(name: str) -> tuple[str, ...]:
    return tuple(sorted(set((resources.files("wonderwords") / "assets" / name).read_text().split())))


def nouns() -> tuple[str, ...]:
    """wonderwords' nouns (the common-words task draws from them)."""
    return _word_list("nounlist.txt")


def random_key_word(rng: random.Random) -> str:
    """RULER's key word: a uniform draw from every adjective-noun pair of wonderwords' lists."""
    return f"{rng.choice(_word_list('adjectivelist.txt'))}-{rng.choice(nouns())}"


def random_value(kind: str, rng: random.Random) -> str:
    """A needle value as RULER makes it: a 7-digit number, an adjective-noun word, or a UUID4."""
    if kind == "number":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "word":
        return random_key_word(rng)
    if kind == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown needle kind {kind!r} (known: {', '.join(NEEDLE_KINDS)})")
