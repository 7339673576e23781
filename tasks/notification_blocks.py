"""Notification block types indexops adds to Prefect (registered through the `prefect.collections`
entry point, so the server that sends automation notifications can load them too)."""

from __future__ import annotations

from prefect.blocks.notifications import AppriseNotificationBlock
from pydantic import Field, SecretStr


class SMTPEmail(AppriseNotificationBlock):
    """E-mail over any SMTP server (Prefect core only ships SendGrid). The Apprise mailto URL,
    password included, is a secret field: the API and UI show it obfuscated."""

    _block_type_name = "indexops SMTP Email"
    _block_type_slug = "indexops-smtp-email"
    _description = "Send notifications as e-mail through an SMTP server."

    url: SecretStr = Field(
        default=...,
        title="Apprise mailto URL",
        description="mailtos://user:password@smtp.example.com:465?to=a@example.com&from=b@example.com",
    )
