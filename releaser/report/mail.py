"""Compose a report mail: the HTML report with its charts inline, a plain-text alternative,
and the Markdown and JSON reports attached (`releaser.mailer` hands it to the server)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

from ..model import MailSpec
from .render import Rendered


def compose(
    rendered: Rendered, spec: MailSpec, recipients: tuple[str, ...], message_id: str, version: str
) -> EmailMessage:
    """HTML body with its charts inline (multipart/related), a plain-text alternative, and
    the Markdown and JSON reports attached."""
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = spec.sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    message.set_content(rendered.markdown)
    message.add_alternative(rendered.mail_html, subtype="html")
    html = next(part for part in message.iter_parts() if part.get_content_type() == "text/html")
    for cid, png in rendered.charts.items():
        html.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>", filename=f"{cid}.png")
    message.add_attachment(rendered.markdown, subtype="markdown", filename=f"report-{version}.md")
    message.add_attachment(
        rendered.json.encode(), maintype="application", subtype="json", filename=f"report-{version}.json"
    )
    return message
