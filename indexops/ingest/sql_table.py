"""A database table (or a SELECT) as a keyed source: each row is one document, its id the id column.

A table does not send changes and is too big to re-read every run, so a run reads only the rows at
or after the stored watermark, ordered by (watermark, id). The bound is inclusive: rows sharing the
boundary value (a unit that committed half of them before a crash, a row updated without moving its
watermark) are read again and their fingerprints (a hash of the columns read) decide what is
fetched, so nothing is lost and nothing unchanged is applied twice. A hard delete leaves no row to
see, so every `reconcile_every_runs`-th run also lists every id: the listing is then complete and
the engine deletes the keys that are gone, and fetches by id a row it never saw (one committed late
with an older watermark). The URL's password, the one `sql.password_env` names, or the one the caller
passes (the flows read `sql.password_block`), is put in no message, record or state.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from indexops.index.context import IndexContext
from indexops.ingest.keyed import Fetched, Listed, ListsKeys, Listing
from indexops.models import Quarantined, SourceRecord
from indexops.settings import SqlSourceSettings, mask_url_password

_IN_BATCH = 500  # ids per `IN (...)` when rows are fetched by id


class SqlSourceError(RuntimeError):
    """The table could not be read; the message names the URL with its password masked."""


@dataclass
class SqlTable(ListsKeys):
    """The rows of `settings.table` (or `settings.query`) at `url`, one document per row.

    The engine uses no pool: a connection lives only for the query that needs it (the listing, a
    fetch by id), so nothing is left open when a run ends, fails or is killed between units.
    """

    url: str = field(repr=False)
    feed: str
    settings: SqlSourceSettings
    kind: str = "sql"
    password: str | None = field(default=None, repr=False)  # read by the caller (a Prefect Secret block)
    _engine: sa.Engine | None = field(default=None, init=False, repr=False)
    _rows: dict[str, tuple[int, dict[str, Any], str]] = field(default_factory=dict, init=False, repr=False)
    _ids: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def list_keys(self, ctx: IndexContext) -> Listing:
        """The rows at or after the stored watermark (every row on a first run or without a
        watermark column), plus every id on a reconciling run.

        Raises:
            SqlSourceError: the database could not be read.
        """
        s, wm = self.settings, self.settings.watermark_column
        state = ctx.ledger.source_position(self.feed)
        incremental = wm is not None and state.get("position") is not None
        since = int(state.get("runs_since_reconcile", 0)) + 1
        reconcile = incremental and since >= s.reconcile_every_runs
        self._rows, self._ids = {}, {}
        entries: list[Listed] = []
        with self._reading("listing"), self._engine_().connect() as c:
            src = self._source()
            q = sa.select(*self._cols(src))
            if incremental:  # no watermark left in the table: no row is at or after the position
                bound = self._bound(c, src, state["position"])
                q = q.where(src.c[wm] >= bound if bound is not None else sa.false())
            q = q.order_by(*([src.c[wm]] if wm else []), src.c[s.id_column])
            for n, m in enumerate(c.execute(q).mappings(), start=1):
                row = dict(m)
                fp = _fingerprint(row)
                key = self._key(row, fp)
                if key not in self._rows:
                    entries.append(Listed(key, fp))
                self._rows[key] = (n, row, fp)
            if reconcile:
                idc = src.c[s.id_column]
                for v in c.execute(sa.select(idc).where(idc.is_not(None))).scalars():
                    if str(v) not in self._rows and str(v) not in self._ids:
                        self._ids[str(v)] = v
                        entries.append(Listed(str(v), None))
        complete = not incremental or reconcile
        return Listing(entries, complete=complete, state={"runs_since_reconcile": 0 if complete else since})

    def fetch(self, ctx: IndexContext, keys: Sequence[Listed]) -> Iterator[Fetched]:
        """The keys' records in the order given: listed rows from memory, ids seen only by the
        reconciliation read by id (a row deleted since the listing is skipped: the next
        reconciliation deletes it). Only listed rows carry a position: a late row's older
        watermark must not move the stored one back."""
        late = self._by_id([e.key for e in keys if e.key not in self._rows and e.key in self._ids])
        for e in keys:
            if e.key in self._rows:
                n, row, fp = self._rows.pop(e.key)
                yield self._fetched(e.key, n, row, fp, with_position=True)
            elif e.key in late:
                row = late[e.key]
                yield self._fetched(e.key, 0, row, _fingerprint(row), with_position=False)

    def _fetched(self, key: str, n: int, row: dict[str, Any], fp: str, with_position: bool) -> Fetched:
        s, wm = self.settings, self.settings.watermark_column
        mark = row.get(wm) if wm else None
        pos = _json_value(mark) if with_position and mark is not None else None
        if row[s.id_column] is None:
            return Fetched(key, fp, error=self._bad(n, None, f"id column {s.id_column!r} is NULL", row), position=pos)
        raw: dict[str, Any] = {"id": key}
        if isinstance(mark, datetime):
            raw["updated_at"] = mark.isoformat()
        if s.soft_delete_column and _is_set(row[s.soft_delete_column]):
            return Fetched(key, fp, record=SourceRecord(file=self._file, line=n, raw={**raw, "op": "delete"}), position=pos)
        text = row[s.text_column]
        if text is None or not str(text).strip():
            return Fetched(key, fp, error=self._bad(n, key, f"text column {s.text_column!r} is NULL or empty", row), position=pos)
        title = row[s.title_column] if s.title_column else None
        raw.update(title="" if title is None else str(title), text=str(text),
                   metadata={c: _meta_value(row[c]) for c in s.metadata_columns})
        return Fetched(key, fp, record=SourceRecord(file=self._file, line=n, raw=raw), position=pos)

    def _by_id(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not keys:
            return out
        with self._reading("fetch by id"), self._engine_().connect() as c:
            src = self._source()
            idc = src.c[self.settings.id_column]
            for i in range(0, len(keys), _IN_BATCH):
                q = sa.select(*self._cols(src)).where(idc.in_([self._ids[k] for k in keys[i : i + _IN_BATCH]]))
                out.update((str(m[self.settings.id_column]), dict(m)) for m in c.execute(q).mappings())
        return out

    @property
    def _file(self) -> str:
        return self.settings.table or "query"

    def _columns(self) -> list[str]:
        s = self.settings
        names = [s.id_column, s.title_column, s.text_column, *s.metadata_columns, s.soft_delete_column, s.watermark_column]
        return list(dict.fromkeys(n for n in names if n))

    def _cols(self, src: Any) -> list[Any]:
        return [src.c[n] for n in self._columns()]

    def _source(self) -> Any:
        """The FROM: the table (quoted by the dialect), or the query as a subquery."""
        s = self.settings
        cols = [sa.column(n) for n in self._columns()]
        if s.query:
            return sa.text(s.query).columns(*cols).subquery("src")
        if not s.table:
            raise SqlSourceError("the sql source needs sql.table or sql.query")
        schema, _, name = s.table.rpartition(".")
        return sa.table(name, *cols, schema=schema or None)

    def _bound(self, c: sa.Connection, src: Any, pos: Any) -> Any:
        """The stored position (JSON) as the watermark column's type, read from one of its values
        (None: the column holds none)."""
        wm = src.c[self.settings.watermark_column]
        sample = c.execute(sa.select(wm).where(wm.is_not(None)).limit(1)).scalar()
        if sample is None or not isinstance(pos, str) or isinstance(sample, str):
            return None if sample is None else pos
        if isinstance(sample, datetime):
            return datetime.fromisoformat(pos)
        if isinstance(sample, date):
            return date.fromisoformat(pos)
        if isinstance(sample, time):
            return time.fromisoformat(pos)
        return Decimal(pos) if isinstance(sample, Decimal) else type(sample)(pos)

    def _key(self, row: dict[str, Any], fp: str) -> str:
        rid = row[self.settings.id_column]
        return f"(null {self.settings.id_column}) {fp[:16]}" if rid is None else str(rid)

    def _bad(self, n: int, key: str | None, reason: str, row: dict[str, Any]) -> Quarantined:
        where = f"row {n} of the listing" if n else "row read by id"
        return Quarantined(feed=self.feed, file=self._file, line=n, record_id=key, reason=f"{reason} ({where})",
                           excerpt=_canonical(row)[:200])

    def _engine_(self) -> sa.Engine:
        if self._engine is None:
            url = sa.engine.make_url(self.url)
            env = self.settings.password_env
            if self.password is not None:
                url = url.set(password=self.password)
            elif env:
                if not os.environ.get(env):
                    raise SqlSourceError(f"sql.password_env names {env}, which is not set in the environment")
                url = url.set(password=os.environ[env])
            self._engine = sa.create_engine(url, poolclass=NullPool)
        return self._engine

    def _scrub(self, text: str) -> str:
        """`text` without the URL's password (raw and decoded) or the environment's."""
        try:
            pw = sa.engine.make_url(self.url).password  # as the driver was given it (SQLAlchemy's own parse)
        except Exception:  # noqa: BLE001 - an unparsable URL never connected
            pw = None
        pw = str(pw) if pw is not None else None
        env = os.environ.get(self.settings.password_env) if self.settings.password_env else None
        for p in sorted({p for p in (pw, unquote(pw) if pw else None, env, self.password) if p}, key=len, reverse=True):
            text = text.replace(p, "***")
        return text

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Any error as a `SqlSourceError` with the URL masked and the password scrubbed."""
        try:
            yield
        except SqlSourceError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised without the original, which may hold the password
            try:
                where = mask_url_password(self.url)
            except ValueError:
                where = "the database"
            raise SqlSourceError(self._scrub(f"{what} of {self._file} at {where} failed: {type(e).__name__}: {e}")) from None

def _json_value(v: Any) -> Any:
    """A column value as JSON: datetimes as ISO strings, decimals as strings (exact), bytes as hex."""
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return v if v is None or isinstance(v, (str, int, float, bool, list, dict)) else str(v)


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_value)


def _fingerprint(row: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(row).encode()).hexdigest()


def _meta_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v.is_finite() and v == v.to_integral_value() else float(v)
    return json.loads(json.dumps(v, default=_json_value)) if isinstance(v, (list, dict)) else _json_value(v)


def _is_set(v: Any) -> bool:
    """A soft-delete column's value marks the row deleted: true, non-zero, or any other non-null value."""
    if v is None or isinstance(v, bool):
        return bool(v)
    if isinstance(v, (int, float, Decimal)):
        return v != 0
    if isinstance(v, str):
        return v.strip().lower() not in ("", "0", "f", "false", "n", "no")
    return True
