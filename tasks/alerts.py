"""Alerts as Prefect automations: notification blocks and automations from the operations config.

Idempotent by name: blocks are saved with overwrite, an automation of the same name is updated (its
duplicates deleted), and automations of ours that the config no longer names are removed.
Secret values are resolved here and written only into secret block fields."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from prefect.blocks.notifications import CustomWebhookNotificationBlock, MicrosoftTeamsWebhook, SlackWebhook
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger

from indexops.operations import Destination, OperationsSettings, automation_specs, block_name, email_apprise_url
from tasks.notification_blocks import SMTPEmail

TAG = "indexops"
OUR_BLOCK = re.compile(r"^indexops-[a-z0-9-]+-\d+-(slack|teams|webhook|email)$")


class AlertsSetupError(RuntimeError):
    """Setup cannot proceed (a referenced secret is missing); the message never holds a secret."""


@dataclass
class SetupReport:
    blocks: dict[str, str] = field(default_factory=dict)  # block name -> kind
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    removed_blocks: list[str] = field(default_factory=list)


def resolve_secret(ref: str) -> str:
    """`env:VAR` from the environment, `secret:name` from a Prefect Secret block."""
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise AlertsSetupError(f"environment variable {name} is not set (referenced as {ref})")
        return value
    try:
        return str(Secret.load(name).get())
    except ValueError as e:
        raise AlertsSetupError(f"Prefect Secret block {name!r} not found (referenced as {ref}); create it with "
                               f"`prefect block create secret` or Secret(value=...).save({name!r})") from e


def notification_block(name: str, d: Destination) -> Any:
    """The Prefect notification block for one destination, secrets resolved into secret fields."""
    if d.kind == "slack":
        return SlackWebhook(url=resolve_secret(d.url or ""))
    if d.kind == "teams":
        return MicrosoftTeamsWebhook(url=resolve_secret(d.url or ""))
    if d.kind == "webhook":
        # the URL sits in `secrets` (obfuscated by the API) and is substituted at send time
        return CustomWebhookNotificationBlock(
            name=name, url="{{webhook_url}}", secrets={"webhook_url": resolve_secret(d.url or "")},
            json_data={"subject": "{{subject}}", "body": "{{body}}", "text": "{{subject}}\n\n{{body}}"},
        )
    password = resolve_secret(d.smtp_password) if d.smtp_password else None
    return SMTPEmail(url=email_apprise_url(d, password))


def setup_alerts(ops: OperationsSettings) -> SetupReport:
    """Create or update every notification block and automation the config describes."""
    specs = automation_specs(ops)
    rep = SetupReport()
    built: list[tuple[str, str, Any, str]] = []
    missing: list[str] = []
    for channel, dests in ops.alerts.channels.items():  # resolve every secret before changing anything
        for i, d in enumerate(dests):
            name = block_name(channel, i, d)
            try:
                built.append((channel, name, notification_block(name, d), d.kind))
            except AlertsSetupError as e:
                missing.append(f"{channel}/{d.kind}: {e}")
    if missing:
        raise AlertsSetupError("nothing was changed; " + "; ".join(missing))
    block_ids: dict[str, list[Any]] = {}
    for channel, name, block, kind in built:
        block_ids.setdefault(channel, []).append(block.save(name, overwrite=True))
        rep.blocks[name] = kind
    wanted = {s["name"] for s in specs}
    with get_client(sync_client=True) as client:
        for s in specs:
            auto = AutomationCore(
                name=s["name"], description=s["description"], enabled=True, tags=[TAG],
                trigger=EventTrigger.model_validate(s["trigger"]),
                actions=[SendNotification(block_document_id=b, subject=s["subject"], body=s["body"]) for b in block_ids[s["channel"]]],
            )
            existing = client.read_automations_by_name(s["name"])
            if existing:
                client.update_automation(existing[0].id, auto)
                for extra in existing[1:]:
                    client.delete_automation(extra.id)
                rep.updated.append(s["name"])
            else:
                client.create_automation(auto)
                rep.created.append(s["name"])
        for a in client.read_automations():
            if TAG in (a.tags or []) and a.name not in wanted:
                client.delete_automation(a.id)
                rep.removed.append(a.name)
        for b in client.read_block_documents(include_secrets=False):
            # only notification blocks this command named (never a user's Secret block)
            if b.name and OUR_BLOCK.match(b.name) and b.name not in rep.blocks:
                client.delete_block_document(b.id)
                rep.removed_blocks.append(b.name)
    return rep
