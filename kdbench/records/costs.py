"""Inference cost per architecture: measured once per (architecture, device), shared by files.

Every method of a pair trains the same student network, so its latency, throughput,
parameters and FLOPs are properties of the architecture on a device, not of the method.
A cell that finishes looks for ``<results>/costs/<key>.json``; only when it is absent
does it measure, and it writes the file atomically. Cells may run in other processes or
on other machines that share the results folder, so the file, not memory, is what they
share. A record names the key (``arch_cost``); reports read the file and never import
torch. Two cells racing on a new key may both measure: the last file written is kept,
and every record still shows that one figure.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.records.identity import stable_hash
from kdbench.records.store import write_json_atomic

FOLDER = "costs"
FORMAT = "kdbench-arch-cost/1"
NAN = math.nan


def arch_key(spec: dict[str, Any], setting: dict[str, Any]) -> str:
    """The key of one architecture (model spec, input shape, classes) on one device setup."""
    return stable_hash({"model": spec, **setting})


def cost_file(results: Path, key: str) -> Path:
    return Path(results) / FOLDER / f"{key}.json"


def read_cost(path: Path) -> dict[str, Any] | None:
    """A cost file's content, or None when it is missing or unreadable (shown as '-')."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def write_cost(path: Path, data: dict[str, Any]) -> None:
    write_json_atomic(Path(path), {"format": FORMAT, **data})


def results_folder(record_path: Path | None) -> Path | None:
    """The results folder a record file lives in (``<results>/records/<id>.json``)."""
    if record_path is None:
        return None
    parent = Path(record_path).parent
    return parent.parent if parent.name == "records" else parent


@dataclass(frozen=True)
class Cost:
    """One architecture's inference cost on one device, as every row of its student shows.

    ``measurements`` is 1 for a cost file (measured once for the architecture); for
    records made before that, the figures are the median over ``measurements`` cells'
    own measurements, and the IQRs are across those cells (``per_cell``).
    """

    device: str
    p50_ms: float = NAN
    p50_iqr_ms: float = NAN
    p50_ci_ms: tuple[float, float] = (NAN, NAN)
    p99_ms: float = NAN
    throughput: float = NAN
    throughput_iqr: float = NAN
    params: float = NAN
    flops: float = NAN
    bytes: float = NAN
    measurements: int = 1
    per_cell: bool = False
    key: str = ""
    missing: bool = False  # a record names this cost file, but it is absent or unreadable


def _num(section: dict[str, Any] | None, key: str) -> float:
    value = (section or {}).get(key)
    return float(value) if isinstance(value, int | float) else NAN


def _pair(section: dict[str, Any] | None, key: str) -> tuple[float, float]:
    value = (section or {}).get(key)
    if isinstance(value, list) and len(value) == 2:
        return (float(value[0]), float(value[1]))
    return (NAN, NAN)


def from_file(data: dict[str, Any]) -> Cost:
    latency, size = data.get("latency") or {}, data.get("size") or {}
    return Cost(
        device=str(latency.get("device") or (data.get("setting") or {}).get("device") or "-"),
        p50_ms=_num(latency, "batch1_p50_ms"),
        p50_iqr_ms=_num(latency, "batch1_iqr_ms"),
        p50_ci_ms=_pair(latency, "batch1_p50_ci_ms"),
        p99_ms=_num(latency, "batch1_p99_ms"),
        throughput=_num(latency, "throughput_img_s"),
        throughput_iqr=_num(latency, "throughput_iqr_img_s"),
        params=_num(size, "params"),
        flops=_num(size, "flops_per_image"),
        bytes=_num(size, "serialized_bytes"),
        key=str(data.get("key") or ""),
    )


def _iqr(xs: list[float]) -> float:
    if len(xs) < 2:
        return NAN
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[2] - q[0]


def from_cells(records: list[dict[str, Any]]) -> Cost | None:
    """Older records' own per-cell measurements summarised per device: medians, and the
    spread across cells (which is measurement noise: the network is the same)."""
    latency = [r.get("latency") or {} for r in records]
    p50 = [v for v in (_num(x, "batch1_p50_ms") for x in latency) if not math.isnan(v)]
    rate = [v for v in (_num(x, "throughput_img_s") for x in latency) if not math.isnan(v)]
    sizes = [r.get("size") or {} for r in records]
    params = [v for v in (_num(s, "params") for s in sizes) if not math.isnan(v)]
    if not (p50 or rate or params):
        return None
    flops = [v for v in (_num(s, "flops_per_image") for s in sizes) if not math.isnan(v)]
    nbytes = [v for v in (_num(s, "serialized_bytes") for s in sizes) if not math.isnan(v)]
    p99 = [v for v in (_num(x, "batch1_p99_ms") for x in latency) if not math.isnan(v)]
    device = next((str(x["device"]) for x in latency if x.get("device")), "-")
    return Cost(
        device=device,
        p50_ms=statistics.median(p50) if p50 else NAN,
        p50_iqr_ms=_iqr(p50),
        p99_ms=statistics.median(p99) if p99 else NAN,
        throughput=statistics.median(rate) if rate else NAN,
        throughput_iqr=_iqr(rate),
        params=max(params) if params else NAN,
        flops=max(flops) if flops else NAN,
        bytes=max(nbytes) if nbytes else NAN,
        measurements=max(len(p50), len(rate), 1),
        per_cell=True,
    )


def architecture_costs(
    records: list[tuple[dict[str, Any], Path | None]], role: str = "student"
) -> list[Cost]:
    """The costs of one network (``role``: the records' student or teacher): each cost
    file referenced once; for a student, older records without a reference are summarised
    per device. Sorted by device."""
    files: dict[str, Cost] = {}
    legacy: dict[str, list[dict[str, Any]]] = {}
    for record, path in records:
        ref = ((record.get("arch_cost") or {}).get(role)) or None
        folder = results_folder(path)
        if ref and folder is not None:
            if ref["key"] not in files:
                data = read_cost(folder / ref["file"])
                files[ref["key"]] = (
                    from_file(data) if data else Cost(device="-", key=ref["key"], missing=True)
                )
            continue
        if role != "student":  # records made before measured no teacher
            continue
        device = str((record.get("latency") or {}).get("device") or "-")
        legacy.setdefault(device, []).append(record)
    out = list(files.values())
    out += [c for c in (from_cells(group) for group in legacy.values()) if c is not None]
    return sorted(out, key=lambda c: (c.per_cell, c.device, c.key))
