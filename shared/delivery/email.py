"""The owner's email for a play: the same narrative as the task, as plain text and as HTML.

The templates are files beside this module (templates/play_email.txt and .html), editable
without touching code; they use `$placeholders` (docs/operations.md lists them). Every value
put into the HTML template is escaped; the narrative's own text becomes paragraphs.
"""

from __future__ import annotations

import html
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shared.delivery.html import text_to_html
from shared.routing.messages import PlayDelivery

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


def render_email(delivery: PlayDelivery, templates: Path = TEMPLATES) -> EmailContent:
    values = {
        "subject": delivery.subject,
        "owner_name": (delivery.owner.name if delivery.owner else None) or "there",
        "account_name": delivery.account_name,
        "due": delivery.due.isoformat(),
        "priority": delivery.priority.lower(),
        "play": delivery.play,
        "trigger": delivery.trigger,
        "tier_note": f" (escalation {delivery.tier})" if delivery.tier else "",
        "play_id": delivery.play_id,
    }
    text_template, html_template = _templates(templates)
    text = text_template.substitute(values, body_text=delivery.body.strip())
    escaped = {name: html.escape(value) for name, value in values.items()}
    page = html_template.substitute(escaped, body_html=text_to_html(delivery.body))
    return EmailContent(subject=delivery.subject, text=text, html=page)


@cache
def _templates(folder: Path) -> tuple[string.Template, string.Template]:
    return (
        string.Template((folder / "play_email.txt").read_text(encoding="utf-8")),
        string.Template((folder / "play_email.html").read_text(encoding="utf-8")),
    )
