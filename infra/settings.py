"""Deployment settings: the few knobs that differ between stages, read from CDK context."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.currencies import ISO_4217_CODES
from shared.horizon import DEFAULT_HORIZON_DAYS
from shared.outcomes.models import OutcomeKind
from shared.timezones import portal_zone

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GIT_REVISION = re.compile(r"^[0-9a-f]{7,40}$")
_DEPLOYER = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
# Comma-separated HubSpot internal values (pipeline ids, deal stage ids, dealtype options).
_INTERNAL_VALUES = re.compile(r"^([A-Za-z0-9_.:-]{1,100}(,[A-Za-z0-9_.:-]{1,100})*)?$")


@dataclass(frozen=True)
class UpswingSettings:
    stage: str = "dev"
    alarm_email: str | None = None
    api_rate_limit: int = 100
    api_burst_limit: int = 200
    retention_days: int = 400
    # Powertools' Tracer (a subsegment per AWS call) at ~0.2 s per cold start; see shared/observability.
    detailed_tracing: bool = False
    # The ruleset the evaluator runs, a file under rules/ (packaged with the code).
    ruleset_path: str = "rules/reference.yaml"
    # Shadow rulesets, files under rules/: evaluated on the same stream, recorded, never routed.
    shadow_rulesets: tuple[str, ...] = ()
    # Recorded with each ruleset version the deployment runs (context only: synth never calls git).
    deployer: str | None = None
    git_revision: str | None = None
    # The Secrets Manager secret the stack creates for the HubSpot private-app token (you put the
    # token in after the first deploy); default upswing/<stage>/hubspot-token.
    hubspot_secret_name: str | None = None
    # HubSpot's burst limit for the app (100 on Free/Starter, 190 above), shared by the senders.
    hubspot_requests_per_10s: int = 100
    # The HubSpot portal's time zone (an IANA name): tasks fall due at `hubspot_due_hour` there, and
    # its daily API limit resets at its midnight.
    hubspot_portal_timezone: str = "UTC"
    # The hour of the due day (0-23, the portal's time) a HubSpot task falls due.
    hubspot_due_hour: int = 17
    # The task custom property carrying the play id, once `upswing hubspot create-property` made it
    # (then lookups use EQ on it, the body marker as fallback); None: the body marker only.
    hubspot_play_id_property: str | None = None
    # Closed-won deals read back as outcomes (needs crm.objects.deals.read, crm.objects.companies.read).
    hubspot_read_deals: bool = True
    # Comma-separated deal stage ids meaning closed-won ("" = HubSpot's hs_is_closed_won).
    hubspot_deal_closed_won_stages: str = ""
    # Comma-separated pipeline ids whose deals are read ("" = every pipeline).
    hubspot_deal_pipelines: str = ""
    # A deal property naming the outcome kind; deals without a value take hubspot_deal_default_kind.
    hubspot_deal_kind_property: str | None = None
    hubspot_deal_default_kind: str = "plan_upgrade"
    # Comma-separated dealtype values that are not expansions ("" = none).
    hubspot_deal_excluded_types: str = "newbusiness"
    # The portal's company currency (deals without deal_currency_code are in it).
    hubspot_company_currency: str = "USD"
    # The HubSpot portal (hub) id, for the Slack message's "Open in HubSpot" button; None: no button.
    hubspot_portal_id: str | None = None
    # The verified SES identity play emails come from.
    sender_email: str = "upswing@example.com"
    # How often the scheduler checks each HubSpot task of a play with auto_close (docs/rules.md).
    auto_close_check_hours: int = 6
    # How long after a firing an expansion counts as its result (attribution, fates, trigger metrics).
    expansion_horizon_days: int = DEFAULT_HORIZON_DAYS
    # How long the S3 events archive keeps events (days; the ledger keeps them retention_days).
    archive_retention_days: int = 1825

    def __post_init__(self) -> None:
        # The stage ends up in the stack name and the event bus name: keep it to safe characters.
        if not _STAGE_NAME.match(self.stage):
            raise ValueError(f"stage {self.stage!r} must be 1-20 of a-z 0-9 - (starting with a letter)")
        if self.hubspot_portal_id is not None and not self.hubspot_portal_id.isdigit():
            raise ValueError(
                f"hubspot_portal_id {self.hubspot_portal_id!r} is the portal's number, e.g. 4455667"
            )
        if not _EMAIL.match(self.sender_email):
            raise ValueError(f"sender_email {self.sender_email!r} is not an e-mail address")
        portal_zone(self.hubspot_portal_timezone)  # a ValueError that names the setting's expected form
        if not 0 <= self.hubspot_due_hour <= 23:
            raise ValueError(
                f"hubspot_due_hour must be an hour of the day, 0-23, got {self.hubspot_due_hour}"
            )
        if self.hubspot_play_id_property and not _PROPERTY_NAME.match(self.hubspot_play_id_property):
            raise ValueError(
                f"hubspot_play_id_property {self.hubspot_play_id_property!r} is not a HubSpot property name "
                "(lower-case letters, digits and _, starting with a letter), e.g. upswing_play_id"
            )
        self._check_deal_settings()
        if self.git_revision is not None and not _GIT_REVISION.match(self.git_revision):
            raise ValueError(
                f"git_revision {self.git_revision!r} is not a git commit id (7-40 hex digits), "
                "e.g. -c git_revision=$(git rev-parse HEAD)"
            )
        if self.deployer is not None and not _DEPLOYER.match(self.deployer):
            raise ValueError(
                f"deployer {self.deployer!r} must be 1-64 of letters, digits and . _ @ + - "
                "(a user or pipeline name)"
            )
        if not 1 <= self.auto_close_check_hours <= 168:
            raise ValueError(
                f"auto_close_check_hours must be 1-168 (an hour to a week), got {self.auto_close_check_hours}"
            )
        if not 1 <= self.expansion_horizon_days <= self.retention_days:
            raise ValueError(
                f"expansion_horizon_days must be 1 to retention_days ({self.retention_days}), "
                f"got {self.expansion_horizon_days}: a firing must still be kept when its horizon ends"
            )
        if not self.retention_days <= self.archive_retention_days <= 3650:
            raise ValueError(
                f"archive_retention_days must be from retention_days ({self.retention_days}) to 3650, got "
                f"{self.archive_retention_days}: the archive is what keeps events past the ledger"
            )
        for name in ("api_rate_limit", "api_burst_limit", "retention_days", "hubspot_requests_per_10s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")

    def _check_deal_settings(self) -> None:
        for name in (
            "hubspot_deal_closed_won_stages",
            "hubspot_deal_pipelines",
            "hubspot_deal_excluded_types",
        ):
            if not _INTERNAL_VALUES.match(getattr(self, name)):
                raise ValueError(
                    f"{name} {getattr(self, name)!r} must be comma-separated HubSpot internal values "
                    "(ids like closedwon or 1234567, no spaces)"
                )
        if self.hubspot_deal_kind_property and not _PROPERTY_NAME.match(self.hubspot_deal_kind_property):
            raise ValueError(
                f"hubspot_deal_kind_property {self.hubspot_deal_kind_property!r} is not a HubSpot "
                "property name (lower-case letters, digits and _, starting with a letter)"
            )
        kinds = [kind.value for kind in OutcomeKind]
        if self.hubspot_deal_default_kind not in kinds:
            raise ValueError(f"hubspot_deal_default_kind must be one of {', '.join(kinds)}")
        if self.hubspot_company_currency not in ISO_4217_CODES:
            raise ValueError(
                f"hubspot_company_currency {self.hubspot_company_currency!r} is not an ISO 4217 "
                "currency code, e.g. USD"
            )

    @property
    def is_prod(self) -> bool:
        return self.stage == "prod"

    @property
    def hubspot_secret(self) -> str:
        return self.hubspot_secret_name or f"upswing/{self.stage}/hubspot-token"

    @property
    def slack_bot_token_secret(self) -> str:
        """The secret the stack creates for the Slack bot token (xoxb-...; put it in after deploying)."""
        return f"upswing/{self.stage}/slack-bot-token"

    @property
    def slack_signing_secret(self) -> str:
        """The secret the stack creates for the Slack app's signing secret."""
        return f"upswing/{self.stage}/slack-signing-secret"

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> UpswingSettings:
        """Settings from `cdk -c key=value` / cdk.json context (CLI values arrive as strings)."""
        defaults = cls()
        return cls(
            stage=str(get("stage") or defaults.stage),
            alarm_email=str(get("alarm_email")) if get("alarm_email") else None,
            api_rate_limit=_as_int(get("api_rate_limit"), defaults.api_rate_limit),
            api_burst_limit=_as_int(get("api_burst_limit"), defaults.api_burst_limit),
            retention_days=_as_int(get("retention_days"), defaults.retention_days),
            detailed_tracing=str(get("detailed_tracing")).lower() == "true",
            ruleset_path=str(get("ruleset") or defaults.ruleset_path),
            shadow_rulesets=_as_paths(get("shadow_rulesets")),
            deployer=str(get("deployer")) if get("deployer") else None,
            git_revision=str(get("git_revision")) if get("git_revision") else None,
            hubspot_secret_name=str(get("hubspot_secret_name")) if get("hubspot_secret_name") else None,
            hubspot_requests_per_10s=_as_int(
                get("hubspot_requests_per_10s"), defaults.hubspot_requests_per_10s
            ),
            hubspot_portal_timezone=str(get("hubspot_portal_timezone") or defaults.hubspot_portal_timezone),
            hubspot_due_hour=_as_int(get("hubspot_due_hour"), defaults.hubspot_due_hour),
            hubspot_play_id_property=(
                str(get("hubspot_play_id_property")) if get("hubspot_play_id_property") else None
            ),
            hubspot_read_deals=str(get("hubspot_read_deals") or "true").lower() == "true",
            hubspot_deal_closed_won_stages=str(get("hubspot_deal_closed_won_stages") or ""),
            hubspot_deal_pipelines=str(get("hubspot_deal_pipelines") or ""),
            hubspot_deal_kind_property=(
                str(get("hubspot_deal_kind_property")) if get("hubspot_deal_kind_property") else None
            ),
            hubspot_deal_default_kind=str(
                get("hubspot_deal_default_kind") or defaults.hubspot_deal_default_kind
            ),
            hubspot_deal_excluded_types=str(
                defaults.hubspot_deal_excluded_types
                if get("hubspot_deal_excluded_types") is None
                else get("hubspot_deal_excluded_types")
            ),
            hubspot_company_currency=str(
                get("hubspot_company_currency") or defaults.hubspot_company_currency
            ),
            hubspot_portal_id=str(get("hubspot_portal_id")) if get("hubspot_portal_id") else None,
            sender_email=str(get("sender_email") or defaults.sender_email),
            auto_close_check_hours=_as_int(get("auto_close_check_hours"), defaults.auto_close_check_hours),
            expansion_horizon_days=_as_int(get("expansion_horizon_days"), defaults.expansion_horizon_days),
            archive_retention_days=_as_int(get("archive_retention_days"), defaults.archive_retention_days),
        )


def _as_paths(value: Any) -> tuple[str, ...]:
    """A list in cdk.json, or comma-separated on the command line (-c shadow_rulesets=a.yaml,b.yaml)."""
    if not value:
        return ()
    parts = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(str(part).strip() for part in parts if str(part).strip())


def _as_int(value: Any, default: int) -> int:
    return default if value is None or value == "" else int(value)
