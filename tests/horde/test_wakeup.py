import asyncio

import pytest

from bot.horde._clients.wakeup import Wakeup, sleep_or_until_set


async def test_sleep_runs_its_full_delay_when_not_set() -> None:
    wakeup = Wakeup()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await wakeup.sleep(0.05) is False
    assert loop.time() - started >= 0.045


async def test_set_wakes_every_sleeper_at_once() -> None:
    wakeup = Wakeup()
    sleepers = [asyncio.create_task(wakeup.sleep(30)) for _ in range(3)]
    await asyncio.sleep(0)
    wakeup.set()
    async with asyncio.timeout(1):
        assert await asyncio.gather(*sleepers) == [True, True, True]


async def test_a_set_wakeup_does_not_sleep() -> None:
    wakeup = Wakeup()
    wakeup.set()
    async with asyncio.timeout(0.5):
        assert await wakeup.sleep(30) is True


async def test_a_sleeper_parks_on_a_timer_not_on_a_bare_future() -> None:
    wakeup = Wakeup()
    task = asyncio.create_task(wakeup.sleep(30))
    await asyncio.sleep(0)
    # The caller awaits its sleeper task, which awaits asyncio.sleep's timer future.
    waiter = task._fut_waiter  # type: ignore[attr-defined]
    assert isinstance(waiter, asyncio.Task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_the_caller_propagates_and_leaves_no_sleeper() -> None:
    wakeup = Wakeup()
    task = asyncio.create_task(wakeup.sleep(30))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wakeup._sleepers == set()
    assert not wakeup.is_set()


@pytest.mark.parametrize("event_type", [Wakeup, asyncio.Event])
async def test_sleep_or_until_set_works_with_any_event(event_type: type[asyncio.Event]) -> None:
    event = event_type()
    assert await sleep_or_until_set(0.01, event) is False
    waiting = asyncio.create_task(sleep_or_until_set(30, event))
    await asyncio.sleep(0.01)
    event.set()
    async with asyncio.timeout(1):
        assert await waiting is True
    assert await sleep_or_until_set(0.01, None) is False


async def test_wait_parks_on_a_timer_and_returns_when_set() -> None:
    wakeup = Wakeup()
    waiting = asyncio.create_task(wakeup.wait())
    await asyncio.sleep(0)
    # Event.wait() would leave the task on a bare future, which SimCord cannot tell from busy work.
    assert isinstance(waiting._fut_waiter, asyncio.Task)  # type: ignore[attr-defined]
    wakeup.set()
    async with asyncio.timeout(1):
        assert await waiting is True


async def test_wait_sees_a_set_that_was_cleared_before_it_ran() -> None:
    wakeup = Wakeup()
    waiting = asyncio.create_task(wakeup.wait())
    await asyncio.sleep(0)
    wakeup.set()
    wakeup.clear()
    async with asyncio.timeout(1):
        assert await waiting is True


async def test_wait_returns_at_once_when_already_set_and_cancels_cleanly() -> None:
    wakeup = Wakeup()
    wakeup.set()
    async with asyncio.timeout(0.5):
        assert await wakeup.wait() is True
    wakeup.clear()
    waiting = asyncio.create_task(wakeup.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert wakeup._sleepers == set()
