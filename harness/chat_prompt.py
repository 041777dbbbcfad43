"""Token-level prompt assembly in the model's chat template.

The accuracy benchmarks need prompts of an exact token count with a needle at an
exact depth, so prompts are built from token ids: the template's head, the body,
the template's tail and the start of the assistant's answer (RULER's answer prefix).
"""

from __future__ import annotations

from typing import Any

_MARK = "\x00"


def chat_frame(tokenizer: Any, answer_prefix: str = "") -> tuple[list[int], list[int]]:
    """Token ids around a user message: (head, tail); the tail opens the assistant's turn."""
    head, tail = tokenizer.apply_chat_template(
        [{"role": "user", "content": _MARK}], tokenize=False, add_generation_prompt=True
    ).split(_MARK)
    return (
        tokenizer.encode(head, add_special_tokens=False),
        tokenizer.encode(tail + answer_prefix, add_special_tokens=False),
    )


def chat_prompt(tokenizer: Any, user_text: str, answer_prefix: str = "") -> list[int]:
    """One user message in the chat template, the assistant's answer started with `answer_prefix`."""
    head, tail = chat_frame(tokenizer, answer_prefix)
    return head + tokenizer.encode(user_text, add_special_tokens=False) + tail


def _sentence_start(tokenizer: Any, filler_ids: list[int], cut: int, reach: int = 64) -> int:
    """The first token after the last sentence end at or before `cut` (within `reach`), else `cut`."""
    pieces = tokenizer.convert_ids_to_tokens(filler_ids[max(cut - reach, 0) : cut])
    for back, piece in enumerate(reversed(pieces)):
        if piece.rstrip().endswith("."):
            return cut - back
    return cut


def needle_prompt(
    tokenizer: Any,
    num_tokens: int,
    filler: str,
    needle: str | None,
    depth: float,
    question: str,
    answer_prefix: str,
    at_sentence: bool = False,
) -> list[int]:
    """A chat prompt of exactly `num_tokens` tokens: filler with `needle` at `depth` (0..1), a question.

    `filler` must hold at least `num_tokens` tokens. With `at_sentence`, the needle moves back
    to the start of the sentence its depth falls in, so it never splits a sentence.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    head, tail = chat_frame(tokenizer, answer_prefix)
    tail = tokenizer.encode(" " + question, add_special_tokens=False) + tail
    needle_ids = tokenizer.encode(" " + needle + " ", add_special_tokens=False) if needle else []
    body = num_tokens - len(head) - len(tail) - len(needle_ids)
    if body <= 0:
        raise ValueError(f"{num_tokens} tokens are too few for the prompt's frame and needle")
    filler_ids = tokenizer.encode(filler, add_special_tokens=False)
    if len(filler_ids) < body:
        raise ValueError(f"filler holds {len(filler_ids)} tokens, {body} needed")
    cut = int(body * depth)
    if at_sentence:
        cut = _sentence_start(tokenizer, filler_ids, cut)
    return head + filler_ids[:cut] + needle_ids + filler_ids[cut:body] + tail
