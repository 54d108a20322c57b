"""Property-based tests of the languages: every registered task's text form round-trips, and a
mutated string is accepted exactly when an independent check says it is a sentence, and
otherwise rejected with the offending position named."""

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from headcoop.errors import HeadcoopError
from headcoop.tasks import Count01, Histogram, Induction, Plurality, Successor, registered_tasks
from headcoop.tasks.counting import CountingLanguage

TASKS = [
    Count01(),
    Plurality(),
    Histogram(letters=3, length=6),
    Induction(tokens=6, half=4),
    Successor(fillers=2, max_fill=3),
]


def test_every_registered_task_is_covered():
    assert {t.name for t in TASKS} >= {
        "count01",
        "plurality",
        "histogram",
        "induction",
        "successor",
    }
    built_in = {n for n, c in registered_tasks().items() if c.__module__.startswith("headcoop.")}
    assert built_in <= {t.name for t in TASKS}


def sentence(task, data) -> str:
    """A random valid string of ``task``, built from its own full-sequence form."""
    if isinstance(task, CountingLanguage):
        counts = data.draw(st.lists(st.integers(0, 12), min_size=3, max_size=3))
        example = torch.tensor([counts])
        seed = data.draw(st.integers(0, 2**16))
        tokens = task.sequences(example, seed=seed).tokens[0].tolist()
        length = int(task.lengths(example)[0])
        return task.format(tokens[:length])
    if isinstance(task, Histogram):
        letters = data.draw(st.lists(st.integers(0, task.letters - 1), min_size=6, max_size=6))
        return task.format(task.sequences(torch.tensor([letters])).tokens[0].tolist())
    examples = task.split("test")
    example = examples[data.draw(st.integers(0, len(examples) - 1))][None]
    return task.format(task.sequences(example).tokens[0].tolist())


def is_sentence(task, text: str) -> bool:
    """An independent check: the grammar as a regular expression, the answer by counting."""
    if isinstance(task, Histogram):
        return (
            re.fullmatch(f"[{''.join(task.vocab[1 : 1 + task.letters])}]{{{task.length}}}", text)
            is not None
        )
    if isinstance(task, Induction):
        words = text.split(" ")
        block = words[: task.half]
        return (
            len(words) == 2 * task.half
            and all(w in task.vocab[1:] for w in words)
            and len(set(block)) == task.half
            and words[task.half :] == block
        )
    if isinstance(task, Successor):
        words = text.split(" ")
        asked = {task.vocab[t] for t in task.asked.tolist()}
        fillers = {f"_{k}" for k in range(task.fillers)}
        body = words[:-1]
        return (
            words[-1] == "="
            and sum(w in task.items for w in body) == 1
            and all(w in fillers or w in asked for w in body)
        )
    body, answers = "".join(task.counted), "".join(task.answers)
    match = re.fullmatch(rf"(\[BOS\])?([{re.escape(body)}]*)=([{answers}])(\[EOS\])?", text)
    if match is None:
        return False
    counts = torch.tensor([[match.group(2).count(t) for t in task.counted]])
    return task.answers[int(task.answer_index(counts)[0])] == match.group(3)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_format_then_parse_is_the_identity(task, data):
    text = sentence(task, data)
    ids = task.parse(text)
    assert task.format(ids) == text
    assert task.parse(f"[BOS]{text}") == ids


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_a_mutated_string_is_accepted_exactly_when_it_is_a_sentence(task, data):
    text = sentence(task, data)
    alphabet = [*sorted(set(task.vocab) - {"[BOS]", "[EOS]"}), "x"]
    kind = data.draw(st.sampled_from(["drop", "swap", "insert", "replace", "flip"]))
    if isinstance(task, Induction | Successor):  # words, not characters
        words = text.split(" ")
        i = data.draw(st.integers(0, len(words) - 1))
        if kind == "drop":
            words = words[:i] + words[i + 1 :]
        elif kind == "swap" and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif kind == "insert":
            words.insert(i, data.draw(st.sampled_from(alphabet)))
        else:
            words[i] = data.draw(st.sampled_from(alphabet))
        mutated = " ".join(words)
        if is_sentence(task, mutated):
            assert task.format(task.parse(mutated)) == mutated
        else:
            with pytest.raises(HeadcoopError, match=r"position \d+"):
                task.parse(mutated)
        return
    i = data.draw(st.integers(0, max(0, len(text) - 1)))
    if kind == "drop":
        mutated = text[:i] + text[i + 1 :]
    elif kind == "swap" and len(text) > 1:
        j = min(i + 1, len(text) - 1)
        mutated = text[:i] + text[j] + text[i] + text[j + 1 :] if j > i else text
    elif kind == "insert":
        mutated = text[:i] + data.draw(st.sampled_from(alphabet)) + text[i:]
    elif kind == "flip" and isinstance(task, CountingLanguage):
        others = [a for a in task.answers if a != text[-1]]
        mutated = text[:-1] + data.draw(st.sampled_from(others))
    else:
        mutated = text[:i] + data.draw(st.sampled_from(alphabet)) + text[i + 1 :]
    if is_sentence(task, mutated):
        assert task.format(task.parse(mutated)) == mutated.removeprefix("[BOS]").removesuffix(
            "[EOS]"
        )
    else:
        with pytest.raises(HeadcoopError, match=r"position \d+"):
            task.parse(mutated)
