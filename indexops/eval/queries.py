"""Labeled query sets (BEIR and TREC qrels, graded), versioned by content hash."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from indexops.ids import canonical_json, sha256_hex


@dataclass
class QuerySet:
    name: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str = ""
    hash: str = field(default="")

    def __post_init__(self) -> None:
        # only judged queries are evaluated; the hash covers exactly what is evaluated
        self.queries = {q: t for q, t in self.queries.items() if q in self.qrels}
        if not self.hash:
            self.hash = sha256_hex(canonical_json({"queries": self.queries, "qrels": self.qrels}))

    def __len__(self) -> int:
        return len(self.queries)


def _read_queries(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                o = json.loads(line)
                qid = o.get("_id", o.get("id", o.get("qid")))
                if qid is None or "text" not in o:
                    raise ValueError(f"{path}:{n}: a query needs '_id' and 'text'")
                out[str(qid)] = str(o["text"])
    else:  # TREC topics as TSV: qid \t text
        with open(path, encoding="utf-8") as f:
            for row in csv.reader(f, delimiter="\t"):
                if len(row) >= 2:
                    out[row[0]] = row[1]
    return out


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR TSV (`query-id corpus-id score` with a header) or TREC (`qid 0 docid rel`)."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 3:
                qid, doc, rel = parts
            elif len(parts) == 4:
                qid, _, doc, rel = parts
            else:
                raise ValueError(f"{path}:{n}: expected 3 (BEIR) or 4 (TREC) columns, got {len(parts)}")
            try:
                grade = int(float(rel))
            except ValueError:
                if n == 1:
                    continue  # the BEIR header
                raise ValueError(f"{path}:{n}: relevance {rel!r} is not a number") from None
            qrels.setdefault(qid, {})[doc] = grade
    return qrels


def load_query_set(queries: str | Path, qrels: str | Path, name: str | None = None) -> QuerySet:
    """Load queries and qrels; queries without judgements are dropped.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a malformed line (with file and line number).
    """
    qp, rp = Path(queries), Path(qrels)
    for p in (qp, rp):
        if not p.is_file():
            raise FileNotFoundError(f"not found: {p}")
    qs = QuerySet(name=name or f"{qp.parent.name}/{rp.stem}", queries=_read_queries(qp), qrels=_read_qrels(rp), source=f"{qp} + {rp}")
    if not qs.queries:
        raise ValueError(f"no query in {qp} has a judgement in {rp}")
    return qs


def beir_split(folder: str | Path, split: str) -> QuerySet:
    f = Path(folder)
    return load_query_set(f / "queries.jsonl", f / "qrels" / f"{split}.tsv", name=f"{f.name}/{split}")
