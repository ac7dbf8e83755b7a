"""Sending one email through SES v2: the request shape in one place, out of the handler.

SES cannot be asked afterwards whether a message went out, so callers send through the delivery
ledger (shared/delivery/ledger.py) and treat an error answer as a definite failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.delivery.email import EmailContent


@dataclass(frozen=True)
class SesMailer:
    client: Any  # a boto3 `sesv2` client
    sender: str  # the verified identity mail comes from

    def send(self, recipient: str, content: EmailContent, tags: dict[str, str]) -> str:
        """Send a text + HTML message; SES's message id."""
        answer = self.client.send_email(
            FromEmailAddress=self.sender,
            Destination={"ToAddresses": [recipient]},
            Content={
                "Simple": {
                    "Subject": {"Data": content.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": content.text, "Charset": "UTF-8"},
                        "Html": {"Data": content.html, "Charset": "UTF-8"},
                    },
                }
            },
            EmailTags=[{"Name": name, "Value": value} for name, value in tags.items()],
        )
        return str(answer["MessageId"])
