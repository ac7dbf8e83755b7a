"""A seeded population of accounts using the reference metrics, for the engine benchmarks.

Activity levels mix heavy, medium, light and dormant accounts (≈ 6 events per account-day on
average, more than the 10-million-events-a-year scale the backtest targets), with gauges that
drift towards their plan limits so that the reference triggers do fire.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from shared.accounts.models import AccountProfile
from shared.counters.bucket import CountedEvent, padded_sequence
from shared.events.models import EventKind

SEGMENTS = {"smb": (10, 50_000), "mid-market": (50, 250_000), "enterprise": (250, 2_000_000)}
LEVELS = {"heavy": 0.2, "medium": 0.4, "light": 0.3, "dormant": 0.1}
# Per activity level: the chance of activity on a day, and the mean events per active day.
_DAILY = {"heavy": (0.95, 1.0), "medium": (0.6, 0.4), "light": (0.25, 0.15), "dormant": (0.02, 0.1)}


@dataclass(frozen=True)
class Account:
    account_id: str
    level: str
    profile: AccountProfile


def accounts(count: int, seed: int = 7) -> list[Account]:
    rng = random.Random(seed)
    found = []
    for number in range(count):
        segment = rng.choice(list(SEGMENTS))
        seats, api_calls = SEGMENTS[segment]
        level = rng.choices(list(LEVELS), weights=list(LEVELS.values()))[0]
        profile = AccountProfile.model_validate(
            {
                "name": f"Account {number}",
                "segment": segment,
                "plan": {"name": "Growth", "limits": {"seats": seats, "api.calls": api_calls}},
                "renewal_date": (date(2026, 1, 1) + timedelta(days=rng.randrange(365 * 2))).isoformat(),
                "flags": {"do_not_contact": rng.random() < 0.03},
            }
        )
        found.append(Account(f"acct-{number:06d}", level, profile))
    return found


def events(account: Account, first_day: date, days: int, seed: int = 7) -> Iterator[CountedEvent]:
    """The account's events, day after day."""
    rng = random.Random(f"{seed}:{account.account_id}")
    chance, scale = _DAILY[account.level]
    assert account.profile.plan
    seats_limit = account.profile.plan.limits["seats"]
    api_limit = account.profile.plan.limits["api.calls"]
    users = [f"user-{n}" for n in range(max(3, int(seats_limit * rng.uniform(0.3, 0.9))))]
    teams = [f"team-{n}" for n in range(rng.randint(1, 8))]
    utilisation = rng.uniform(0.3, 0.8)
    drift = rng.uniform(-0.001, 0.004)
    sequence = 0

    def event(name: str, day: date, value: float | int = 1, **dimensions: str) -> CountedEvent:
        nonlocal sequence
        sequence += 1
        moment = datetime(day.year, day.month, day.day, rng.randrange(24), rng.randrange(60))
        return CountedEvent(
            sequence=padded_sequence(str(sequence)),
            stream_sequence=str(sequence),
            account_id=account.account_id,
            event_id=f"{account.account_id}-{sequence}",
            name=name,
            kind=EventKind.GAUGE if name == "seats.active" else EventKind.COUNT,
            value=Decimal(str(value)),
            occurred_at=moment.strftime("%Y-%m-%dT%H:%M:00.000000Z"),
            day=day.isoformat(),
            dimensions=dimensions,
        )

    for offset in range(days):
        day = first_day + timedelta(days=offset)
        if rng.random() > chance:
            continue
        utilisation = min(1.0, max(0.05, utilisation + drift + rng.gauss(0, 0.01)))
        yield event("seats.active", day, round(seats_limit * utilisation))
        for _ in range(_poisson(rng, 8 * scale)):
            yield event("app.session", day, user=rng.choice(users))
        for _ in range(_poisson(rng, 3 * scale)):
            yield event("feature.analytics.used", day, team=rng.choice(teams), user=rng.choice(users))
        yield event("api.calls", day, round(api_limit / 30 * utilisation * rng.uniform(0.5, 1.3)))
        for name, mean in (
            ("dashboard.created", 0.3),
            ("user.invited", 0.3),
            ("admin.added", 0.02),
            ("paywall.hit", 0.1),
            ("feature.advanced.used", 1.0),
            ("ticket.integration.created", 0.05),
        ):
            for _ in range(_poisson(rng, mean * scale)):
                yield event(name, day)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means used here.
    limit, count, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
