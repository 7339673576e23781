"""Blue/green serving: the `live` alias names the collection a RAG app reads. Promotion swaps
it after an eval gate; rollback swaps it back, or pins it to one retained snapshot. The ledger
keeps every switch.

Readers of a following alias serve the collection's newest published snapshot; a pinned alias
(`rollback --to`, or promoting an older retained snapshot) holds them on exactly that snapshot
while ingests go on publishing newer ones, until a promote moves it again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexops.index.snapshot import current_snapshot_id
from indexops.ledger import Ledger
from indexops.store.protocol import SupportsServerAlias

LIVE = "live"


def ensure_live(ledger: Ledger, collection: str) -> dict[str, Any]:
    """The first collection ever built becomes live."""
    a = ledger.alias(LIVE)
    if a is None:
        ledger.set_alias(LIVE, collection, current_snapshot_id(ledger, collection), "init", "first build")
        a = ledger.alias(LIVE)
    assert a is not None
    return a


AliasSwitch = Callable[[str], None]
Retained = Callable[[str, str], bool]  # (collection, snapshot id) -> a published replica of it is kept


def edge_retained(settings: Any, workspace: str | Path) -> Retained | None:
    """For Qdrant Edge, whether a snapshot's published replica is still kept; None on a server
    back end, where a collection serves only its current content."""
    if settings.store.backend != "edge":
        return None
    from indexops.index import replicas

    return lambda coll, sid: replicas.find(replicas.replicas_root(workspace, coll), sid) is not None


def server_alias_switch(settings: Any, workspace: str | Path) -> AliasSwitch | None:
    """For a Qdrant server back end, a function that moves the server-side `live` alias too
    (apps that query Qdrant directly follow it); None for the embedded engine, whose alias is the
    ledger's."""
    if settings.store.backend != "qdrant":
        return None

    def switch(collection: str) -> None:
        from indexops.store.factory import open_store

        st = open_store("qdrant", workspace, collection, 1, settings.store.url, settings.store.api_key_env)
        try:
            if not isinstance(st, SupportsServerAlias):
                raise TypeError(f"store {type(st).__name__} keeps no server-side aliases")
            st.point_alias(LIVE)
        finally:
            st.close()

    return switch


def promote(ledger: Ledger, snapshot: str, reason: str | None = None, switch: AliasSwitch | None = None,
            retained: Retained | None = None) -> dict[str, Any]:
    """Point `live` at the collection whose current content is `snapshot` (id or prefix); live then
    follows that collection's new snapshots. An older snapshot whose replica is retained (Qdrant
    Edge) is served exactly, pinned.

    Raises:
        LookupError: unknown snapshot.
        ValueError: the snapshot's collection has moved on since and it is not retained.
    """
    s = ledger.get_snapshot(snapshot)
    if s is None:
        raise LookupError(f"unknown snapshot {snapshot!r}; `indexops snapshot list` shows the known ones")
    coll = s["collection"]
    now = current_snapshot_id(ledger, coll)
    if now != s["snapshot_id"]:
        if retained is None or not retained(coll, s["snapshot_id"]):
            raise ValueError(f"collection {coll} now holds snapshot {now[:12]}, not {s['snapshot_id'][:12]}, and that one is "
                             "no longer retained; promote the current one")
        ledger.set_alias(LIVE, coll, s["snapshot_id"], "promote", reason, pinned=True)
        return ledger.alias(LIVE)  # type: ignore[return-value]
    if switch is not None:  # the server alias first: the ledger never claims a switch that did not happen
        switch(coll)
    ledger.set_alias(LIVE, coll, now, "promote", reason)
    return ledger.alias(LIVE)  # type: ignore[return-value]


def rollback_to(ledger: Ledger, snapshot: str, reason: str | None = None, switch: AliasSwitch | None = None,
                retained: Retained | None = None) -> dict[str, Any]:
    """Serve exactly `snapshot` (id or prefix): its content, not its collection's current one.
    Live stays pinned to it while ingests go on; `promote` releases it.

    Raises:
        LookupError: unknown snapshot, or (`replicas.SnapshotNotRetained`) no longer retained.
    """
    from indexops.index.replicas import SnapshotNotRetained

    s = ledger.get_snapshot(snapshot)
    if s is None:
        raise LookupError(f"unknown snapshot {snapshot!r}; `indexops snapshot list` shows the known ones")
    coll, sid = s["collection"], s["snapshot_id"]
    if retained is None:  # a server collection holds only its current content
        if current_snapshot_id(ledger, coll) != sid:
            raise SnapshotNotRetained(f"snapshot {sid[:16]} is not what {coll} holds now; a Qdrant server back end can roll "
                                      "back to a collection's current content only (restore older ones from Qdrant snapshots)")
        if switch is not None:
            switch(coll)
    elif not retained(coll, sid):
        raise SnapshotNotRetained(f"snapshot {sid[:16]} is no longer retained (serving.retention); `indexops snapshot "
                                  "list --retained` shows the ones that are")
    ledger.set_alias(LIVE, coll, sid, "rollback", reason, pinned=True)
    return ledger.alias(LIVE)  # type: ignore[return-value]


def rollback(ledger: Ledger, reason: str | None = None, switch: AliasSwitch | None = None) -> dict[str, Any]:
    """Point `live` back at the collection it served before the current one.

    Raises:
        LookupError: there is nothing to roll back to.
    """
    hist = ledger.alias_history(LIVE)
    if not hist:
        raise LookupError("the live alias has never been set")
    cur = hist[-1]["collection"]
    prev = next((h for h in reversed(hist[:-1]) if h["collection"] != cur), None)
    if prev is None:
        raise LookupError(f"live has only ever served {cur}; nothing to roll back to")
    if switch is not None:
        switch(prev["collection"])
    ledger.set_alias(LIVE, prev["collection"], current_snapshot_id(ledger, prev["collection"]), "rollback", reason)
    return ledger.alias(LIVE)  # type: ignore[return-value]
