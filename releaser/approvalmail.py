"""Approval requests by mail: the dashboard users who may decide a request, and have an `email`,
get a message with its signed link (the one `approval.requested` carries), in the dashboard's
language, through `report.mail`'s SMTP server."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, urlsplit

from .events import Event
from .mailer import MailNotSent, send
from .model import Config, DashboardUser, MailSpec
from .model import Event as Entry
from .terminal import shown_time

WORDS = {
    "en": {
        "subject": "[{project}] {release} awaits your approval for {stage} ({environment})",
        "asks": "{by} asks to promote {release} of {project} to {stage} on {environment}.",
        "link": "Open this link to decide (you sign in first): {link}",
        "expires": "The link expires at {until}.",
        "cli": "Or from a terminal: releaser approve {release} --stage {stage} --reason TEXT "
        "(or reject, with the same arguments).",
    },
    "zh-CN": {
        "subject": "【{project}】版本{release}的{stage}阶段（{environment}）等待您审批",
        "asks": "{by}请求将{project}的版本{release}发布到{environment}的{stage}阶段。",
        "link": "打开此链接审批（需先登录）：{link}",
        "expires": "链接于{until}失效。",
        "cli": "也可在终端执行：releaser approve {release} --stage {stage} --reason 理由"
        "（拒绝则用releaser reject，参数相同）。",
    },
}


class ApprovalMail:
    """Mails each approval request to the users who may decide it."""

    def __init__(self, config: Config, mail: MailSpec, users: tuple[DashboardUser, ...], language: str):
        self.config, self.mail, self.users, self.language = config, mail, users, language

    def concerns(self, event: Entry) -> bool:
        return event.kind == Event.APPROVAL_REQUESTED

    def recipients(self, event: Entry) -> tuple[str, ...]:
        """Who may approve the stage's environment (and is among the stage's `approvers`, when it
        names them), but not who asked: they know."""
        environment = event.environment or ""
        named = event.data.get("approvers") or []
        return tuple(
            user.email
            for user in self.users
            if user.email
            and user.may("approver", environment)
            and (not named or user.name in named)
            and user.name != event.data.get("by")
        )

    def message(self, event: Entry, recipients: tuple[str, ...]) -> EmailMessage:
        words = WORDS.get(self.language, WORDS["en"])
        link = event.data.get("link")
        values = {
            "project": self.config.project,
            "release": event.release,
            "stage": event.stage,
            "environment": event.environment,
            "by": event.data.get("by", "?"),
            "link": link,
        }
        lines = [words["asks"].format(**values), ""]
        if link:
            lines.append(words["link"].format(**values))
            until = parse_qs(urlsplit(link).query).get("until", [""])[0]
            if until.isdigit():
                lines.append(
                    words["expires"].format(until=shown_time(datetime.fromtimestamp(int(until), UTC).isoformat()))
                )
            lines.append("")
        lines.append(words["cli"].format(**values))
        message = EmailMessage()
        message["Subject"] = words["subject"].format(**values)
        message["From"] = self.mail.sender
        message["To"] = ", ".join(recipients)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid("approval", domain=self.mail.sender.rsplit("@", 1)[-1].strip("> "))
        message.set_content("\n".join(lines) + "\n")
        return message

    def deliver(self, event: Entry) -> None:
        """Send it (retried while the server is reachable but busy); raises when it did not go to
        every recipient."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

        recipients = self.recipients(event)
        if not recipients:
            return
        message, refused = self.message(event, recipients), {}
        for attempt in Retrying(
            stop=stop_after_attempt(3),
            wait=wait_random_exponential(multiplier=0.5, max=5),
            retry=retry_if_exception(lambda exc: isinstance(exc, MailNotSent) and not exc.permanent),
            reraise=True,
        ):
            with attempt:
                refused = send(self.mail, message, recipients, on_commit=lambda: None)
        if refused:
            raise MailNotSent("refused " + "; ".join(f"{who}: {why}" for who, why in refused.items()), permanent=True)
