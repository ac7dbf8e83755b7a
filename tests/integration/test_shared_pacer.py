"""The search pacer shared by every sender (one DynamoDB item per HubSpot account), on moto.

Two senders stand for two Lambda instances: each has its own HubSpot client, and only the table is
shared. Time is one fake clock (the senders' clocks agree, as NTP-synchronised hosts nearly do).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest

from shared.delivery.hubspot import HubSpotClient, HubSpotSettings, HubSpotThrottled
from shared.delivery.pacing import PacingDeadlineExceeded
from shared.delivery.shared_pacer import SharedPacer
from shared.resources import DELIVERIES_TABLE
from tests.conftest import Aws
from tests.unit.test_hubspot_client import PLAY_ID, TOKEN, found
from tests.unit.test_pacing import FakeClock

LIMIT, WINDOW = 5, 1.2


def shared_pacer(aws: Aws, clock: FakeClock, key: str = "hubspot-search#portal-1") -> SharedPacer:
    return SharedPacer(
        aws.dynamodb,
        aws.tables[DELIVERIES_TABLE.env_var],
        key,
        limit=LIMIT,
        window_seconds=WINDOW,
        clock=clock,
        sleep=clock.sleep,
        wall_clock=lambda: 1_800_000_000 + clock.now,
    )


def most_in_any_window(times: list[float], window: float) -> int:
    return max(sum(1 for other in times if start <= other < start + window) for start in times)


def test_given_two_senders_when_both_search_then_together_they_stay_under_the_accounts_search_limit(
    aws: Aws,
) -> None:
    clock = FakeClock()
    searched_at: list[float] = []

    def hubspot(request: httpx.Request) -> httpx.Response:
        searched_at.append(clock.now)
        return found()

    def sender() -> HubSpotClient:
        return HubSpotClient(
            # Each sender's own search budget would allow 4 a second: 8 together, over HubSpot's 5.
            HubSpotSettings(search_requests_per_window=4, search_window_seconds=1.0),
            token=lambda: TOKEN,
            http=httpx.Client(transport=httpx.MockTransport(hubspot)),
            sleep=clock.sleep,
            clock=clock,
            search_pacer=shared_pacer(aws, clock),
        )

    first, second = sender(), sender()
    for _ in range(8):
        first.find_task(PLAY_ID, clock.now + 60)
        second.find_task(PLAY_ID, clock.now + 60)

    assert len(searched_at) == 16
    assert most_in_any_window(searched_at, WINDOW) <= LIMIT
    assert most_in_any_window(searched_at, 1.0) <= LIMIT


def test_given_a_full_shared_window_when_the_deadline_is_near_then_the_client_is_throttled_without_waiting(
    aws: Aws,
) -> None:
    clock = FakeClock()
    other_sender = shared_pacer(aws, clock)
    for _ in range(LIMIT):
        other_sender.acquire()
    client = HubSpotClient(
        HubSpotSettings(),
        token=lambda: TOKEN,
        http=httpx.Client(transport=httpx.MockTransport(lambda request: found())),
        sleep=clock.sleep,
        clock=clock,
        search_pacer=shared_pacer(aws, clock),
    )

    with pytest.raises(HubSpotThrottled) as raised:
        client.find_task(PLAY_ID, clock.now + 0.5)

    assert raised.value.wait_seconds == pytest.approx(WINDOW, abs=0.01)
    assert clock.sleeps == []


def test_given_another_hubspot_account_then_its_searches_do_not_count_here(aws: Aws) -> None:
    clock = FakeClock()
    for _ in range(LIMIT):
        shared_pacer(aws, clock, "hubspot-search#portal-2").acquire()

    shared_pacer(aws, clock, "hubspot-search#portal-1").acquire(deadline=clock.now)

    assert clock.sleeps == []


def test_given_a_lost_race_when_acquiring_then_the_pacer_reads_again_and_never_overgrants(aws: Aws) -> None:
    clock = FakeClock()
    pacer = shared_pacer(aws, clock)
    rival = shared_pacer(aws, clock)
    real_update: Callable[..., object] = aws.dynamodb.update_item
    raced = []

    def update_after_a_rival(**request: object) -> object:
        if not raced:  # between our read and our write, the rival takes the last free slots
            raced.append(True)
            for _ in range(LIMIT):
                rival.acquire()
        return real_update(**request)

    pacer._client = SimpleNamespace(get_item=aws.dynamodb.get_item, update_item=update_after_a_rival)

    with pytest.raises(PacingDeadlineExceeded):
        pacer.acquire(deadline=clock.now + 0.1)

    item = aws.dynamodb.get_item(
        TableName=aws.tables[DELIVERIES_TABLE.env_var], Key={"pk": {"S": "pacer#hubspot-search#portal-1"}}
    )
    assert len(item["Item"]["grants"]["L"]) == LIMIT  # the rival's five; ours was refused
