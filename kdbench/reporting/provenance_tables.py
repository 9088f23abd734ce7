"""The provenance and runs tables: where, with what and from which commit each cell ran."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdbench.reporting.leaderboard import Item


def _git(prov: dict[str, Any]) -> str:
    git = prov.get("git") or {}
    sha = git.get("sha")
    if not sha:
        return "-"
    return sha[:12] + ("+dirty" if git.get("dirty") else "")


def provenance_row(item: Item) -> dict[str, Any]:
    record = item.record
    prov = record.get("provenance") or {}
    return {
        "cell_id": record["cell_id"],
        "dataset": item.dataset,
        "pair": f"{item.teacher or '-'} → {item.student}",
        "method": item.method,
        "seed": item.seed,
        "status": record.get("status"),
        "benchmark": record["config"].get("benchmark"),
        "config_hash": record.get("benchmark_config_hash"),
        "kdbench": prov.get("kdbench"),
        "git": _git(prov),
        "python": prov.get("python"),
        "torch": prov.get("torch"),
        "cuda": prov.get("cuda"),
        "device": prov.get("device"),
        "threads": prov.get("threads"),
        "platform": prov.get("platform"),
        "dataset_fingerprint": (record.get("dataset") or {}).get("fingerprint"),
        "finished_at": record.get("finished_at"),
        "path": str(item.path) if item.path else None,
    }


RUN_KEYS = (
    "folder", "benchmark", "config_hash", "kdbench", "git", "python", "torch", "cuda",
    "device", "platform",
)  # fmt: skip


def run_rows(items: list[Item]) -> list[dict[str, Any]]:
    """Records grouped by where and with what they were produced: one row per run."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        row = provenance_row(item)
        path = item.path
        row["folder"] = str(path.parent.parent if path and path.parent.name == "records" else
                            (path.parent if path else "-"))  # fmt: skip
        groups[tuple(row.get(k) for k in RUN_KEYS)].append(row)
    runs = []
    for key, rows in groups.items():
        times = sorted(r["finished_at"] for r in rows if r["finished_at"])
        runs.append(
            {
                **dict(zip(RUN_KEYS, key, strict=True)),
                "records": len(rows),
                "failed": sum(r["status"] != "ok" for r in rows),
                "first_finished": times[0] if times else None,
                "last_finished": times[-1] if times else None,
            }
        )
    return sorted(runs, key=lambda r: (str(r["folder"]), str(r["first_finished"])))
