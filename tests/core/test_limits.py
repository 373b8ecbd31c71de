"""In-process token buckets: a refused job keeps its place for the next token."""

from __future__ import annotations

import pytest

from castbridge.limits import Limit, LocalPacer, Throttled, holding

LIMIT = Limit(rate=2.0, burst=1.0)  # one token every 0.5 s


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _refused(pacer: LocalPacer, holder: str | None = None) -> Throttled:
    with holding(holder), pytest.raises(Throttled) as refused:
        await pacer.take("acct:1", LIMIT)
    return refused.value


async def test_a_refused_holder_gets_the_next_token_before_a_newcomer() -> None:
    """B is refused on an empty bucket and told when to come back. A's next message, due at the
    very instant the bucket refills, is refused: that token is B's. Before, B was requeued a
    little after the refill and lost it to A, refill after refill."""
    clock = Clock()
    pacer = LocalPacer(clock)
    with holding("job:a1"):
        await pacer.take("acct:1", LIMIT)  # A spends the burst
    clock.now += 0.1
    refused = await _refused(pacer, "job:b")
    assert refused.reserved
    assert refused.wait == pytest.approx(0.4, abs=0.01)
    clock.now += refused.wait
    assert (await _refused(pacer, "job:a2")).wait == pytest.approx(0.5, abs=0.01)  # after B's
    with holding("job:b"):
        await pacer.take("acct:1", LIMIT)  # B's own token, already counted
    clock.now += 0.5
    with holding("job:a2"):
        await pacer.take("acct:1", LIMIT)  # and then A's
    clock.now += 0.1
    assert (await _refused(pacer, "job:a3")).wait == pytest.approx(
        0.4, abs=0.01
    )  # never over the rate


async def test_a_holder_back_too_early_is_told_to_wait_for_its_own_token() -> None:
    clock = Clock()
    pacer = LocalPacer(clock)
    await pacer.take("acct:1", LIMIT)
    first = await _refused(pacer, "job:b")
    clock.now += first.wait / 2
    again = await _refused(pacer, "job:b")
    assert again.reserved
    assert again.wait == pytest.approx(first.wait / 2, abs=0.01)
    clock.now += again.wait
    with holding("job:b"):
        await pacer.take("acct:1", LIMIT)


async def test_bookings_go_two_tokens_ahead_at_most() -> None:
    """A herd of due jobs does not book the bucket out: two tokens are booked (each holder
    waits for its own in place), the rest are refused plainly (and requeued with jitter)."""
    clock = Clock()
    pacer = LocalPacer(clock)
    limit = Limit(rate=2.0, burst=4.0)
    with holding(None):
        await pacer.take("acct:1", limit, 4.0)
    reserved = []
    for n in range(5):
        with holding(f"job:{n}"), pytest.raises(Throttled) as refused:
            await pacer.take("acct:1", limit)
        reserved.append(refused.value.reserved)
    assert reserved == [True, True, False, False, False]


async def test_a_pause_cancels_reservations() -> None:
    """An upstream 429 empties the bucket: a holder coming back during the pause is refused
    like everyone else, not let through on a token booked before it."""
    clock = Clock()
    pacer = LocalPacer(clock)
    await pacer.take("acct:1", LIMIT)
    refused = await _refused(pacer, "job:b")
    await pacer.pause("acct:1", LIMIT, 10.0)
    clock.now += refused.wait
    after = await _refused(pacer, "job:b")
    assert after.wait > 9.0


async def test_without_a_holder_a_refusal_reserves_nothing() -> None:
    """Callers that are not jobs (the CLI, the web edge) just wait and ask again."""
    clock = Clock()
    pacer = LocalPacer(clock)
    await pacer.take("acct:1", LIMIT)
    refused = await _refused(pacer)
    assert not refused.reserved
    clock.now += refused.wait
    await pacer.take("acct:1", LIMIT)


async def test_a_holder_back_late_asks_again() -> None:
    """A booking is good only when its token is due, not whenever the job comes back. A job
    back seconds late (claimed behind older jobs) that spent its booking then would send on top
    of the tokens taken meanwhile: two sends at once on a burst of one, over the rate (the
    four-process test saw Cast's 429). Late, it asks like everyone else."""
    clock = Clock()
    pacer = LocalPacer(clock)
    await pacer.take("acct:1", LIMIT)
    await _refused(pacer, "job:b")  # booked for 100.5
    clock.now += 1.5
    await pacer.take("acct:1", LIMIT)  # another job takes the token there is now
    refused = await _refused(pacer, "job:b")
    assert refused.wait > 0.4


async def test_a_slow_bucket_books_nothing_it_cannot_honour_soon() -> None:
    """A token more than a second away is not booked: its holder would hold a worker slot."""
    clock = Clock()
    pacer = LocalPacer(clock)
    slow = Limit(rate=0.5, burst=1.0)
    await pacer.take("acct:1", slow)
    with holding("job:b"), pytest.raises(Throttled) as refused:
        await pacer.take("acct:1", slow)
    assert not refused.value.reserved


async def test_a_newcomer_books_behind_the_backlogs_booking_whatever_the_burst() -> None:
    """On a burst of 1.5 (Cast's at 3/s), the backlog's next job has already booked the next
    token when B asks: B still books the one after. With the depth capped at the burst it was
    refused plainly, came back after the refill and found the backlog's next booking there:
    it waited for the whole backlog (32 of 40 in the e2e test)."""
    clock = Clock()
    pacer = LocalPacer(clock)
    cast_at_3 = Limit(rate=3.0, burst=1.5)
    await pacer.take("acct:1", cast_at_3, 1.5)
    with holding("job:a2"), pytest.raises(Throttled) as a2:
        await pacer.take("acct:1", cast_at_3)
    with holding("job:b"), pytest.raises(Throttled) as b:
        await pacer.take("acct:1", cast_at_3)
    assert a2.value.reserved
    assert b.value.reserved
    assert b.value.wait == pytest.approx(2 / 3, abs=0.01)
