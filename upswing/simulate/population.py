"""Who the simulated customers are: their profiles, and the behaviour planted in each one.

An account is drawn from its own random stream (the seed and its number), so account 42 is the
same account whatever the population size, and one account can be regenerated alone. Its
profile is what `PUT /v1/accounts/{account_id}` takes; its `Plan` of behaviour (when growth
starts, when it expands, when it declines) is the ground truth a backtest is scored against,
and is never visible in the events except through the usage it shapes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from shared.accounts.models import AccountProfile


@dataclass(frozen=True)
class SimulationConfig:
    accounts: int = 500
    days: int = 365
    seed: int = 7
    # Fixed, so that the defaults alone reproduce a history; `--start` moves it.
    start: date = date(2025, 1, 1)

    def __post_init__(self) -> None:
        if not 1 <= self.accounts <= MAX_ACCOUNTS:
            raise SimulationError(f"--accounts must be between 1 and {MAX_ACCOUNTS:,} (got {self.accounts})")
        if not MIN_DAYS <= self.days <= MAX_DAYS:
            raise SimulationError(
                f"--days must be between {MIN_DAYS} and {MAX_DAYS} (got {self.days}): the planted "
                "behaviours need a few weeks of history to unfold"
            )
        if not 0 <= self.seed < 2**63:
            raise SimulationError(f"--seed must be a non-negative integer below 2**63 (got {self.seed})")

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)


MAX_ACCOUNTS = 1_000_000
MIN_DAYS = 28
MAX_DAYS = 3_660


class SimulationError(ValueError):
    """The simulation cannot run with these settings; the message says what to change."""


class Behaviour(StrEnum):
    EXPAND = "expand"  # usage grows for some weeks, then the account buys more
    # No expansion: steady usage; some sit near their seat limit, some grow for a while and stop
    # (false starts: the signals fire, nothing is bought).
    PLATEAU = "plateau"
    CHURN = "churn"  # usage decays, then stops


class Driver(StrEnum):
    """What an expanding account's growth shows up in; each matches reference signals."""

    SEATS = "seats"  # seats.active towards the limit, admin.added, user.invited
    BREADTH = "breadth"  # analytics across teams and users, paywall.hit, feature.advanced.used
    CONSUMPTION = "consumption"  # api.calls towards the allowance, ticket.integration.created


class ExpansionKind(StrEnum):
    SEATS = "seats"
    PLAN_UPGRADE = "plan_upgrade"
    ADD_ON = "add_on"


# The expansion each primary driver leads to.
KIND_OF_DRIVER = {
    Driver.SEATS: ExpansionKind.SEATS,
    Driver.BREADTH: ExpansionKind.PLAN_UPGRADE,
    Driver.CONSUMPTION: ExpansionKind.ADD_ON,
}
BEHAVIOUR_SHARES = {Behaviour.EXPAND: 0.22, Behaviour.PLATEAU: 0.58, Behaviour.CHURN: 0.20}
FALSE_START_SHARE = 0.25  # of plateau accounts: they grow like expanding accounts, then stop
NOISY_SHARE = 0.35  # accounts with dashboard-building bursts, drawn independently of behaviour
SECONDARY_DRIVER_CHANCE = 0.35


@dataclass(frozen=True)
class PlanTier:
    name: str
    tier: int
    seats: int  # the seat count of the smallest package
    api_calls: int  # the monthly allowance
    seat_price: int  # per seat and year


PLANS = (
    PlanTier("Starter", 0, 10, 100_000, 240),
    PlanTier("Growth", 1, 25, 500_000, 480),
    PlanTier("Business", 2, 100, 2_000_000, 720),
    PlanTier("Enterprise", 3, 300, 10_000_000, 1_080),
)
SEGMENTS = {"smb": 0.5, "mid-market": 0.35, "enterprise": 0.15}
SEGMENT_PLANS = {"smb": (0, 1), "mid-market": (1, 2), "enterprise": (2, 3)}
INDUSTRIES = ("software", "retail", "logistics", "healthcare", "finance", "manufacturing", "media")


@dataclass(frozen=True)
class Usage:
    """The levels an account's activity is drawn around, at the start and at the end of growth."""

    seats_limit: int
    api_limit: int
    utilisation: tuple[float, float]  # seats in use / limit
    consumption: tuple[float, float]  # api calls in 30 days / allowance
    teams: tuple[int, int]  # teams that use analytics
    adoption: tuple[float, float]  # share of active users who use analytics
    advanced_per_day: tuple[float, float]  # uses of advanced features (reported weekly)
    tickets_per_day: tuple[float, float]  # ticket.integration.created
    invites_per_day: tuple[float, float]  # user.invited
    paywall_days: float  # chance of hitting the paywall on a weekday, in the weeks before expanding
    admins: int  # admin.added events spread over the growth


@dataclass(frozen=True)
class Timeline:
    """Day indexes (0 = the first day of the history); `None` when it does not apply."""

    growth_start: int | None = None
    growth_end: int | None = None  # the expansion day, for an account that expands
    paywall_from: int | None = None
    decline_start: int | None = None
    stop_day: int | None = None  # the first day without any event (churned)


@dataclass(frozen=True)
class Expansion:
    day: int
    kind: ExpansionKind
    amount: Decimal


@dataclass(frozen=True)
class SimulatedAccount:
    number: int
    account_id: str
    profile: AccountProfile
    behaviour: Behaviour
    drivers: tuple[Driver, ...]
    usage: Usage
    timeline: Timeline
    expansion: Expansion | None
    noisy: bool
    friction_before_churn: bool


def population(config: SimulationConfig) -> Iterator[SimulatedAccount]:
    """Every account of the simulation, in account-number order."""
    owners = _owner_pools(config.seed)
    for number in range(config.accounts):
        yield simulated_account(config, number, owners)


def account_id(number: int) -> str:
    return f"acct-{number:06d}"


def simulated_account(
    config: SimulationConfig, number: int, owners: dict[str, dict[str, list[dict[str, str]]]] | None = None
) -> SimulatedAccount:
    rng = random.Random(f"upswing-simulate:{config.seed}:account:{number}")  # noqa: S311 (seeded on purpose)
    owners = owners or _owner_pools(config.seed)
    segment = _weighted(rng, SEGMENTS)
    plan = PLANS[rng.choice(SEGMENT_PLANS[segment])]
    seats_limit = round(plan.seats * rng.choice((1, 1.5, 2, 3, 4)))
    api_limit = plan.api_calls * rng.choice((1, 2))
    behaviour = _weighted(rng, BEHAVIOUR_SHARES)
    grows = behaviour is Behaviour.EXPAND or (
        behaviour is Behaviour.PLATEAU and rng.random() < FALSE_START_SHARE
    )
    drivers = _drivers(rng, plan) if grows else ()
    usage = _usage(rng, segment, seats_limit, api_limit, behaviour, drivers)
    timeline = _timeline(rng, config.days, behaviour, grows)
    arr = Decimal(seats_limit * plan.seat_price + api_limit // 10_000 * 12)
    expansion = None
    if behaviour is Behaviour.EXPAND and timeline.growth_end is not None:
        expansion = _expansion(rng, timeline.growth_end, drivers, plan, seats_limit, arr)
    noisy = rng.random() < NOISY_SHARE
    friction_before_churn = behaviour is Behaviour.CHURN and rng.random() < 0.5
    profile = AccountProfile.model_validate(
        {
            "name": _company_name(rng),
            "segment": segment,
            "industry": rng.choice(INDUSTRIES),
            "employees": round(seats_limit * rng.uniform(1.2, 4)),
            "plan": {
                "name": plan.name,
                "tier": plan.tier,
                "top_tier": plan is PLANS[-1],
                "limits": {"seats": seats_limit, "api.calls": api_limit},
            },
            "arr": arr,
            "renewal_date": config.day(rng.randrange(30, 396)).isoformat(),
            "owners": {role: rng.choice(pool[segment]) for role, pool in owners.items()},
            "hubspot": {"company_id": str(4_000_000_000 + number), "contact_id": str(6_000_000_000 + number)},
            "flags": {"do_not_contact": rng.random() < 0.02},
        }
    )
    return SimulatedAccount(
        number=number,
        account_id=account_id(number),
        profile=profile,
        behaviour=behaviour,
        drivers=drivers,
        usage=usage,
        timeline=timeline,
        expansion=expansion,
        noisy=noisy,
        friction_before_churn=friction_before_churn,
    )


_T = TypeVar("_T")


def _weighted(rng: random.Random, shares: dict[_T, float]) -> _T:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _drivers(rng: random.Random, plan: PlanTier) -> tuple[Driver, ...]:
    """The primary driver decides the expansion kind; others join with some chance.

    A top-tier plan has nothing to upgrade to, so breadth is never its primary driver.
    """
    candidates = [driver for driver in Driver if not (driver is Driver.BREADTH and plan is PLANS[-1])]
    primary = rng.choice(candidates)
    others = tuple(d for d in Driver if d is not primary and rng.random() < SECONDARY_DRIVER_CHANCE)
    return (primary, *others)


def _usage(
    rng: random.Random,
    segment: str,
    seats_limit: int,
    api_limit: int,
    behaviour: Behaviour,
    drivers: tuple[Driver, ...],
) -> Usage:
    seats, breadth, consumption = (driver in drivers for driver in Driver)
    steady_high = behaviour is Behaviour.PLATEAU and not drivers and rng.random() < 0.15
    base_utilisation = rng.uniform(0.78, 0.95) if steady_high else rng.uniform(0.35, 0.7)
    teams_from = {"smb": (1, 1), "mid-market": (1, 2), "enterprise": (2, 4)}[segment]
    teams_to = {"smb": (3, 4), "mid-market": (4, 6), "enterprise": (6, 9)}[segment]
    teams = rng.randint(*teams_from)
    adoption = rng.uniform(0.08, 0.25)
    base_consumption = rng.uniform(0.25, 0.6)
    advanced = rng.uniform(2.0, 8.0)
    return Usage(
        seats_limit=seats_limit,
        api_limit=api_limit,
        utilisation=(
            base_utilisation,
            rng.uniform(0.92, 1.0) if seats else min(0.95, base_utilisation * rng.uniform(1.0, 1.1)),
        ),
        consumption=(base_consumption, rng.uniform(0.95, 1.25) if consumption else base_consumption),
        teams=(teams, rng.randint(*teams_to) if breadth else teams),
        adoption=(adoption, rng.uniform(0.45, 0.7) if breadth else adoption),
        advanced_per_day=(advanced, advanced * rng.uniform(2.0, 3.0) if breadth else advanced),
        tickets_per_day=(0.02, rng.uniform(0.2, 0.3) if consumption else 0.02),
        invites_per_day=(0.03, rng.uniform(0.4, 0.7) if seats else 0.03),
        paywall_days=rng.uniform(0.3, 0.45) if breadth else 0.0,
        admins=rng.randint(2, 3) if seats else 0,
    )


def _timeline(rng: random.Random, days: int, behaviour: Behaviour, grows: bool) -> Timeline:
    if grows:
        # Growth ends in the later two thirds, so that most accounts have a baseline before it.
        growth_end = rng.randint(days // 3, days - 1)
        growth_start = max(0, growth_end - rng.randint(42, 120))
        paywall_from = max(growth_start, growth_end - rng.randint(21, 42))
        return Timeline(growth_start=growth_start, growth_end=growth_end, paywall_from=paywall_from)
    if behaviour is Behaviour.CHURN:
        decline_start = rng.randint(days // 5, days * 9 // 10)
        return Timeline(decline_start=decline_start, stop_day=decline_start + rng.randint(30, 90))
    return Timeline()


def _expansion(
    rng: random.Random, day: int, drivers: tuple[Driver, ...], plan: PlanTier, seats_limit: int, arr: Decimal
) -> Expansion:
    kind = KIND_OF_DRIVER[drivers[0]]
    if kind is ExpansionKind.SEATS:
        amount = Decimal(max(1, round(seats_limit * rng.uniform(0.2, 0.6))) * plan.seat_price)
    elif kind is ExpansionKind.PLAN_UPGRADE:
        upgrade = PLANS[plan.tier + 1]
        amount = Decimal(seats_limit * (upgrade.seat_price - plan.seat_price))
    else:
        amount = (arr * Decimal(str(round(rng.uniform(0.1, 0.25), 2)))).quantize(Decimal(1))
    return Expansion(day=day, kind=kind, amount=amount)


_FIRST_NAMES = ("Dana", "Lee", "Sam", "Ari", "Noor", "Kai", "Mina", "Theo", "Ines", "Ravi", "Zoe", "Omar")
_LAST_NAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak", "Haddad", "Kowalski", "Reyes")
_NAME_STARTS = ("Nord", "Blue", "Iron", "Sun", "Maple", "Quartz", "Harbor", "Pine", "Nova", "Atlas", "Cedar")
_NAME_ENDS = ("wind", "field", "stone", "bridge", "works", "line", "peak", "gate", "wave", "crest")
_NAME_KINDS = ("Labs", "Logistics", "Health", "Systems", "Retail", "Media", "Analytics", "Group", "Foods")


def _company_name(rng: random.Random) -> str:
    return f"{rng.choice(_NAME_STARTS)}{rng.choice(_NAME_ENDS)} {rng.choice(_NAME_KINDS)}"


def _owner_pools(seed: int) -> dict[str, dict[str, list[dict[str, str]]]]:
    """A few CSMs and AEs per segment, each with a name, an email and a HubSpot owner id."""
    rng = random.Random(f"upswing-simulate:{seed}:owners")  # noqa: S311 (seeded on purpose)
    pools: dict[str, dict[str, list[dict[str, str]]]] = {"csm": {}, "ae": {}}
    owner_number = 0
    for role, per_segment in (("csm", 4), ("ae", 2)):
        for segment in SEGMENTS:
            people = []
            for _ in range(per_segment):
                owner_number += 1
                first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
                people.append(
                    {
                        "name": f"{first} {last}",
                        "email": f"{first.lower()}.{last.lower()}{owner_number}@example.com",
                        "hubspot_owner_id": str(70_000_000 + owner_number),
                    }
                )
            pools[role][segment] = people
    return pools
