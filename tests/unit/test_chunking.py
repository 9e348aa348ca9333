"""shared/chunking.py."""

from __future__ import annotations

import pytest

from shared.chunking import chunked


def test_chunks_keep_order_and_the_last_is_shorter():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_exact_multiple_and_empty_input():
    assert list(chunked(iter("abcd"), 2)) == [["a", "b"], ["c", "d"]]
    assert list(chunked([], 5)) == []


def test_consumes_lazily():
    consumed = []

    def source():
        for i in range(10):
            consumed.append(i)
            yield i

    first = next(chunked(source(), 4))
    assert first == [0, 1, 2, 3] and consumed == [0, 1, 2, 3]


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        next(chunked([1], 0))
