"""Plain text as simple HTML, the way HubSpot task bodies and email notifications both show it."""

from __future__ import annotations

import html
import re


def text_to_html(text: str) -> str:
    """Blank lines part paragraphs, newlines become <br>, leading spaces stay visible (evidence
    lists are indented); everything is escaped."""
    paragraphs = [
        part for part in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip()) if part.strip()
    ]
    return "".join(f"<p>{'<br>'.join(_line(line) for line in part.splitlines())}</p>" for part in paragraphs)


def _line(line: str) -> str:
    text = line.rstrip()
    stripped = text.lstrip(" ")
    return "&nbsp;" * (len(text) - len(stripped)) + html.escape(stripped, quote=False)
