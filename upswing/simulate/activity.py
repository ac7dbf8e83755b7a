"""What each simulated account does, day by day, and the whole history in time order.

Speed decides the shape of this module: the backtest benchmark wants ten million events, so an
event is a plain tuple until a writer renders it, each account draws from its own random stream
(its history does not depend on who else is simulated), and the whole history is produced one
day at a time across all accounts. A day's events, sorted, are all that is ever held: memory is
bounded by the busiest day, not by the length of the history.

Rates are per day; weekends are quieter. The reference metrics (rules/reference.yaml) are the
ones emitted, with the dimensions its signals read (team and user for analytics, user for
sessions, feature for paywall hits).
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from upswing.simulate.population import SimulatedAccount, SimulationConfig, population


# Compared and hashed by identity: a metric is a key of hot lookups, and there are ten of them.
@dataclass(frozen=True, eq=False)
class Metric:
    name: str
    kind: str  # "count" or "gauge", as the event contract spells them
    dimensions: tuple[str, ...] = ()


METRICS = (
    SEATS := Metric("seats.active", "gauge"),
    API_CALLS := Metric("api.calls", "count"),
    SESSION := Metric("app.session", "count", ("user",)),
    ANALYTICS := Metric("feature.analytics.used", "count", ("team", "user")),
    INVITE := Metric("user.invited", "count"),
    ADMIN := Metric("admin.added", "count"),
    PAYWALL := Metric("paywall.hit", "count", ("feature",)),
    ADVANCED := Metric("feature.advanced.used", "count"),
    TICKET := Metric("ticket.integration.created", "count"),
    DASHBOARD := Metric("dashboard.created", "count"),
)
# The planted noise: bursts of dashboard building, as likely in any account whatever it does next.
NOISE_METRIC = DASHBOARD.name


# An event before rendering, a plain tuple because there are millions:
# (second of the day UTC, account number, sequence within the account's day, metric, value,
#  dimension values in the order of `metric.dimensions`). Sorting a day's events orders them by
# time, then account; the first three make the event id.
RawEvent = tuple[int, int, int, Metric, int, tuple[str, ...]]
SECOND, ACCOUNT, SEQUENCE, METRIC, VALUE, DIMENSIONS = range(6)


class Day(NamedTuple):
    offset: int  # days since the start of the history
    moment: datetime  # midnight UTC
    events: list[RawEvent]  # sorted by time


def history(config: SimulationConfig, accounts: list[SimulatedAccount] | None = None) -> Iterator[Day]:
    """The whole simulated history, one day at a time, every day's events sorted by time."""
    activities = [AccountActivity(account, config) for account in accounts or population(config)]
    for offset in range(config.days):
        events: list[RawEvent] = []
        weekday = config.day(offset).weekday()
        activities = [activity for activity in activities if activity.emit(offset, weekday, events)]
        events.sort(key=_by_second)
        yield Day(offset, _midnight(config, offset), events)


def account_events(account: SimulatedAccount, config: SimulationConfig) -> Iterator[tuple[Day, RawEvent]]:
    """One account's events, day after day (the same events `history` gives for it)."""
    activity = AccountActivity(account, config)
    for offset in range(config.days):
        events: list[RawEvent] = []
        alive = activity.emit(offset, config.day(offset).weekday(), events)
        events.sort(key=_by_second)
        day = Day(offset, _midnight(config, offset), events)
        for event in events:
            yield day, event
        if not alive:
            return


# Sorting by the second alone is enough, and several times faster than comparing tuples: the
# sort is stable, and events are appended in account order, then sequence order.
_by_second = operator.itemgetter(SECOND)


def _midnight(config: SimulationConfig, offset: int) -> datetime:
    day = config.day(offset)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def event_id(seed: int, day: int, event: RawEvent) -> str:
    """Unique within a simulation and the same for the same seed: seed, account, day, sequence."""
    return f"s{seed}-{event[ACCOUNT]}-{day}-{event[SEQUENCE]}"


# Values of dimensions, shared by every account (user u-7 of one account is not u-7 of another).
USERS = tuple(f"u-{n}" for n in range(20_000))
TEAMS = tuple(f"team-{n}" for n in range(16))
PAYWALLED_FEATURES = ("sso", "audit-log", "custom-roles", "data-residency")

_WEEKEND_ACTIVITY = 0.3
# API traffic by weekday and weekend, scaled so that a week averages to 1.
_API_WEEKDAY, _API_WEEKEND = 1.12, 0.72
_MAX_SESSIONS_PER_DAY = 4.0
# Seconds at which interactive use happens: mostly office hours (UTC), a little at night.
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 6, 10, 12, 12, 11, 9, 11, 12, 12, 10, 8, 5, 4, 3, 2, 2, 1)
_HOUR_STARTS = tuple(hour * 3600 for hour, weight in enumerate(_HOUR_WEIGHTS) for _ in range(weight))
_HOURS = len(_HOUR_STARTS)
_SEATS_SYNC_AT = 3600  # the seat count is reported every Monday between 01:00 and 02:00
_ROLLUP_AT = 7200  # the week's advanced-feature uses, every Monday between 02:00 and 03:00
_ACTIVE_DAYS_PER_WEEK = 5 + 2 * _WEEKEND_ACTIVITY  # five weekdays and two quiet weekend days
_API_REPORT_AT = 86_100  # the day's API calls are reported between 23:55 and midnight


class AccountActivity:
    """One account's state as its history unfolds; `emit` must be called for days 0, 1, 2, ...

    The day's interactive events come from one Poisson draw at the sum of the metrics' rates,
    each event then given a metric in proportion to its rate (the same distribution as one draw
    per metric, at a fraction of the cost: most accounts do little on most days).
    """

    def __init__(self, account: SimulatedAccount, config: SimulationConfig) -> None:
        self.account = account
        self._number = account.number
        # Reproducible, not secret: the seed names the history.
        stream = random.Random(f"upswing-simulate:{config.seed}:activity:{account.number}")  # noqa: S311
        self._random = stream.random
        timeline = account.timeline
        self._growth_start, self._growth_end = timeline.growth_start, timeline.growth_end
        self._decline_start, self._stop_day = timeline.decline_start, timeline.stop_day
        self._paywall_from = timeline.paywall_from
        self._admin_days = _admin_days(self._random, account)
        self._paywalled = not (account.profile.plan and account.profile.plan.top_tier)
        self._noisy = account.noisy
        self._burst_days_left = 0
        # Levels vary only while the account grows or declines; outside, they are computed once.
        if timeline.growth_start is not None and timeline.growth_end is not None:
            self._varies = (timeline.growth_start, timeline.growth_end)
        elif timeline.decline_start is not None and timeline.stop_day is not None:
            self._varies = (timeline.decline_start, timeline.stop_day)
        else:
            self._varies = (0, 0)
        # Indexed by 2 * (growth is over) + (weekend).
        self._steady = [
            self._levels(float(after), False, 1.0, weekend)
            for after in (False, True)
            for weekend in (False, True)
        ]

    def emit(self, day: int, weekday: int, out: list[RawEvent]) -> bool:
        """Append the day's events to `out`; False once the account has stopped for good."""
        if self._stop_day is not None and day >= self._stop_day:
            return False
        weekend = weekday >= 5
        varies_from, varies_until = self._varies
        if varies_from <= day < varies_until:
            levels = self._levels(*self._phase(day), weekend)
        else:
            levels = self._steady[2 * (day >= varies_until) + weekend]
        random_, number, append = self._random, self._number, out.append
        first = len(out)

        if weekday == 0:
            # Weekly reports: seats in use, and the last week's uses of the advanced features.
            seats = max(1, min(levels.seats_limit, round(levels.users * (0.98 + 0.04 * random_()))))
            append((_SEATS_SYNC_AT + int(random_() * 3600), number, 1, SEATS, seats, ()))
            uses = round(levels.advanced_per_week * (0.9 + 0.2 * random_()))
            if uses > 0:
                append((_ROLLUP_AT + int(random_() * 3600), number, 2, ADVANCED, uses, ()))

        total = levels.total
        if self._burst_days_left or (self._noisy and random_() < _BURST_CHANCE):
            # The noise: a burst of dashboard building, whatever the account does next.
            self._burst_days_left = (
                self._burst_days_left - 1 if self._burst_days_left else 1 + int(random_() * 3)
            )
            total += _BURST_DASHBOARDS * levels.activity
        thresholds = levels.thresholds
        for _ in range(_poisson(random_, total)):
            second = _HOUR_STARTS[int(random_() * _HOURS)] + int(random_() * 3600)
            pick = random_() * total
            sequence = len(out) - first + 1
            if pick < thresholds[0]:
                user = USERS[int(random_() * levels.users)]
                append((second, number, sequence, SESSION, 1, (user,)))
                if random_() < levels.adoption:
                    # Analytics is used within a session, by its user: the share signal's premise.
                    team, later = (
                        TEAMS[int(random_() * levels.teams)],
                        min(86_399, second + int(random_() * 900)),
                    )
                    append((later, number, sequence + 1, ANALYTICS, 1, (team, user)))
            else:
                others = zip(_OTHERS, thresholds[1:-1], strict=True)
                metric = next((other for other, threshold in others if pick < threshold), DASHBOARD)
                append((second, number, sequence, metric, 1, ()))

        if day in self._admin_days:
            append((_clock(random_), number, len(out) - first + 1, ADMIN, 1, ()))
        if self._paywalled and random_() < self._paywall_chance(day, weekend):
            feature = PAYWALLED_FEATURES[int(random_() * len(PAYWALLED_FEATURES))]
            for _ in range(1 + _poisson(random_, 0.5)):
                append((_clock(random_), number, len(out) - first + 1, PAYWALL, 1, (feature,)))
        calls = round(levels.api_calls * (0.85 + 0.3 * random_()))
        if calls > 0:
            append(
                (_API_REPORT_AT + int(random_() * 300), number, len(out) - first + 1, API_CALLS, calls, ())
            )
        return True

    def _phase(self, day: int) -> tuple[float, bool, float]:
        """How far growth has come (0 to 1), whether it is under way, and what is left of life (1 to 0)."""
        progress, growing, life = 0.0, False, 1.0
        growth_start, growth_end = self._growth_start, self._growth_end
        if growth_start is not None and growth_end is not None and day >= growth_start:
            growing = day < growth_end
            progress = (day - growth_start) / max(1, growth_end - growth_start) if growing else 1.0
        if self._decline_start is not None and self._stop_day is not None and day >= self._decline_start:
            life = 1.0 - (day - self._decline_start) / (self._stop_day - self._decline_start)
        return progress, growing, life

    def _levels(self, progress: float, growing: bool, life: float, weekend: bool) -> _Levels:
        usage = self.account.usage
        activity = (_WEEKEND_ACTIVITY if weekend else 1.0) * life
        # Seats are released slowly as an account declines: contracts outlive enthusiasm.
        utilisation = _between(usage.utilisation, progress) * (0.4 + 0.6 * life)
        users = max(1, round(usage.seats_limit * utilisation))
        adoption = _between(usage.adoption, progress)
        sessions = min(_MAX_SESSIONS_PER_DAY, 0.3 + 0.02 * users) * activity
        tickets_base, tickets_peak = usage.tickets_per_day
        tickets = tickets_base + (tickets_peak - tickets_base) * progress if growing else tickets_base
        if self.account.friction_before_churn and life < 1.0:
            tickets = tickets_base + 0.25 * (1.0 - life)  # friction rises as the account winds down
        rates = (
            sessions,
            (usage.invites_per_day[1] if growing else usage.invites_per_day[0]) * activity,
            tickets * (activity if life == 1.0 else 1.0),
            _QUIET_DASHBOARDS * activity,
        )
        thresholds = tuple(sum(rates[: n + 1]) for n in range(len(rates)))
        consumption = _between(usage.consumption, progress) * life
        return _Levels(
            seats_limit=usage.seats_limit,
            users=users,
            adoption=adoption,
            teams=max(1, round(_between(usage.teams, progress))),
            activity=activity,
            thresholds=thresholds,
            total=thresholds[-1],
            api_calls=usage.api_limit / 30 * consumption * (_API_WEEKEND if weekend else _API_WEEKDAY),
            advanced_per_week=_between(usage.advanced_per_day, progress) * life * _ACTIVE_DAYS_PER_WEEK,
        )

    def _paywall_chance(self, day: int, weekend: bool) -> float:
        """Tries of enterprise-only features: repeated in the weeks before growth ends, rare otherwise."""
        paywall_from, growth_end = self._paywall_from, self._growth_end
        if paywall_from is not None and growth_end is not None and paywall_from <= day < growth_end:
            return 0.0 if weekend else self.account.usage.paywall_days
        return _RANDOM_PAYWALL_CHANCE


@dataclass(frozen=True, slots=True)
class _Levels:
    """An account's rates on one kind of day; steady accounts compute theirs once."""

    seats_limit: int
    users: int
    adoption: float  # the chance that a session includes analytics
    teams: int
    activity: float
    thresholds: tuple[float, ...]  # cumulative rates: sessions, then `_OTHERS`, then quiet dashboards
    total: float
    api_calls: float
    advanced_per_week: float


_OTHERS = (INVITE, TICKET)
_QUIET_DASHBOARDS = 0.02
_BURST_CHANCE = 1 / 60  # a noisy account starts a burst about every two months
_BURST_DASHBOARDS = 3.0  # dashboards a day during a burst
_RANDOM_PAYWALL_CHANCE = 0.004


def _admin_days(random_: Callable[[], float], account: SimulatedAccount) -> frozenset[int]:
    """The days new admins are added: spread over a seats-driven growth."""
    start, end = account.timeline.growth_start, account.timeline.growth_end
    if start is None or end is None or end <= start:
        return frozenset()
    return frozenset(start + int(random_() * (end - start)) for _ in range(account.usage.admins))


def _clock(random_: Callable[[], float]) -> int:
    return _HOUR_STARTS[int(random_() * _HOURS)] + int(random_() * 3600)


def _between(levels: tuple[float, float], progress: float) -> float:
    start, end = levels
    return start + (end - start) * progress


def _poisson(random_: Callable[[], float], mean: float) -> int:
    """Knuth's method: exact, and cheap for the small means of daily activity."""
    if mean <= 0:
        return 0
    limit, count, product = math.exp(-mean), 0, random_()
    while product > limit:
        count += 1
        product *= random_()
    return count
