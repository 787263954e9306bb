"""What add-domain added to a model, read from its architecture.json, for the report and figures to mark.

`mpnas add-domain` records each addition (oldest first) under `added_domains`: the domain, its new nodes, the added
parameters and the parent it grew from. A model from `mpnas train` has no record; one written before the list existed
has only `added_domain` (the latest addition), which is read as a one-element list.
"""

from __future__ import annotations

from typing import Any, Optional


def added_records(meta: dict[str, Any], source: str = "architecture.json") -> list[dict[str, Any]]:
    """The add-domain records of a model's architecture.json, oldest first ([] for a model that was not grown)."""
    records = meta.get("added_domains")
    if records is None:
        records = [meta["added_domain"]] if meta.get("added_domain") else []
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("domain"), str)
                                                and isinstance(r.get("new_nodes", []), list) for r in records):
        raise ValueError(f"{source}: field added_domains must be a list of {{domain, new_nodes, ...}} objects")
    return records


def added_nodes(meta: dict[str, Any], source: str = "architecture.json") -> dict[str, str]:
    """Node id -> the domain whose addition created it, over every recorded addition."""
    return {k: r["domain"] for r in added_records(meta, source) for k in r.get("new_nodes", [])}


def added_summary(meta: dict[str, Any], source: str = "architecture.json") -> Optional[dict[str, Any]]:
    """The `added` entry of metrics.json: the records and the node -> domain map, or None when nothing was added."""
    records = added_records(meta, source)
    if not records:
        return None
    return {"domains": [r["domain"] for r in records], "records": records, "nodes": added_nodes(meta, source)}
