"""Cohort and wave selection: stable, at least one host, exact rounding."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from releaser.cohort import gray_cohort, share, split_waves, stable_order
from releaser.model import Host


def hosts(n: int) -> list[Host]:
    return [Host(f"web-{i}", "127.0.0.1", f"/srv/{i}") for i in range(n)]


def test_ten_percent_rounds_up_and_is_at_least_one():
    assert [len(gray_cohort("prod", hosts(n), 10)) for n in (1, 5, 10, 11, 20, 30, 100)] == [1, 1, 1, 2, 2, 3, 10]
    assert share(30, 10) == 3  # no float drift: 0.1 * 30 is 3.0000000000000004
    assert gray_cohort("prod", [], 10) == []


def test_cohort_is_stable_across_order_and_additions():
    base = hosts(20)
    cohort = {h.name for h in gray_cohort("prod", base, 10)}
    assert {h.name for h in gray_cohort("prod", list(reversed(base)), 10)} == cohort
    # another environment name gives another (but equally stable) choice
    assert stable_order("prod", base) == stable_order("prod", base[::-1])


@given(st.integers(min_value=1, max_value=300), st.floats(min_value=0.5, max_value=100))
def test_cohort_size_property(n, percent):
    cohort = gray_cohort("prod", hosts(n), percent)
    assert 1 <= len(cohort) <= n
    assert len(cohort) >= n * percent / 100 - 1e-9
    assert len({h.name for h in cohort}) == len(cohort)


@given(
    st.integers(min_value=0, max_value=200),
    st.lists(st.floats(min_value=1, max_value=99), max_size=4).map(lambda xs: [*sorted(set(xs)), 100.0]),
)
def test_waves_cover_every_host_once_in_order(n, waves):
    items = list(range(n))
    cut = split_waves(items, waves)
    assert [x for wave in cut for x in wave] == items
    assert all(cut)
    assert len(cut) <= len(waves)


def test_waves_example():
    assert [len(w) for w in split_waves(list(range(9)), [25, 50, 100])] == [3, 2, 4]
