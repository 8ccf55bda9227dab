"""Top-N membership with hysteresis: what decides which queries get their own series."""

from __future__ import annotations

from pgvigil.exporter.collectors.topn import TopN


def test_a_flickering_key_never_enters_while_a_steady_one_does() -> None:
    t = TopN[str](top_n=3, windows=3)
    t.advance({"a": 10, "b": 9, "c": 0, "d": 0})
    assert t.members == {"a", "b"}
    for i in range(6):  # c is in the top 3 every window, d every other window
        t.advance({"a": 10, "b": 0, "c": 5, "d": 6 if i % 2 else 0})
    assert "c" in t.members
    assert "d" not in t.members
    assert "b" not in t.members  # out for 3+ windows


def test_a_member_stays_through_fewer_than_k_windows_out() -> None:
    t = TopN[str](top_n=1, windows=3)
    t.advance({"a": 5, "b": 1})
    for _ in range(2):
        t.advance({"a": 0, "b": 5})
    assert t.members == {"a"}
    t.advance({"a": 9, "b": 5})  # back in: its out-streak starts over
    for _ in range(2):
        t.advance({"a": 0, "b": 5})
    assert t.members == {"a"}
    t.advance({"a": 0, "b": 5})
    assert t.members == {"b"}


def test_windows_1_is_a_plain_top_n_and_idle_keys_never_enter() -> None:
    t = TopN[str](top_n=2, windows=1)
    t.advance({"a": 1, "b": 2, "c": 3})
    assert t.members == {"b", "c"}
    t.advance({"a": 5, "b": 0, "c": 0})
    assert t.members == {"a"}  # b and c added nothing: not in the top at all


def test_a_key_gone_from_the_view_leaves_at_once() -> None:
    t = TopN[str](top_n=2, windows=5)
    t.advance({"a": 1, "b": 2})
    t.advance({"b": 2})
    assert t.members == {"b"}


def test_members_never_exceed_twice_n() -> None:
    t = TopN[int](top_n=2, windows=3)
    t.advance({0: 1, 1: 1})
    for start in range(2, 40, 2):
        for _ in range(3):
            t.advance({k: (10 if k in (start, start + 1) else 0) for k in range(42)})
        assert len(t.members) <= 4
