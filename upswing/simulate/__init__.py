"""`upswing simulate`: a seeded synthetic usage history, so Upswing can be tried without data of one's own.

A backtest needs events, account profiles and what actually happened (expansions). Real ones
are private and slow to get; this package makes a population whose behaviours are planted and
known: accounts that grow and then expand, that plateau, that churn, and a noise signal that
looks like growth but predicts nothing. The reference triggers should find the growers early and
leave the rest alone; the planted truth says whether they did. docs/simulate.md describes it all.

The same seed gives the same files, byte for byte. The pieces are usable alone (the engine
benchmark can draw its population here): `population` yields the accounts and their profiles,
`history` the events of every account one day at a time in time order, `account_events` one
account's events, and `simulate` writes it all to a folder.
"""

from upswing.simulate.activity import (
    METRICS,
    NOISE_METRIC,
    AccountActivity,
    Day,
    account_events,
    event_id,
    history,
)
from upswing.simulate.output import FORMATS, Summary, simulate
from upswing.simulate.population import (
    Behaviour,
    Driver,
    ExpansionKind,
    SimulatedAccount,
    SimulationConfig,
    SimulationError,
    population,
)

__all__ = [
    "FORMATS",
    "METRICS",
    "NOISE_METRIC",
    "AccountActivity",
    "Behaviour",
    "Day",
    "Driver",
    "ExpansionKind",
    "SimulatedAccount",
    "SimulationConfig",
    "SimulationError",
    "Summary",
    "account_events",
    "event_id",
    "history",
    "population",
    "simulate",
]
