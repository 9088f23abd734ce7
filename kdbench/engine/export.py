"""``kdbench export``: a kept student as a deployable file (TorchScript or ONNX)."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch

from kdbench.core.errors import KdbenchError
from kdbench.engine.students import build_student, read_student, student_path
from kdbench.records.store import atomic_path

__all__ = ["FORMATS", "export_student", "record_file"]

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}


def record_file(results: Path, cell: str) -> Path:
    """The record of ``cell`` in ``results``: a cell id, or the path of one of its records.

    Anything that would lead outside ``<results>/records/`` (``../x``, another folder's
    record) is refused: export reads that record and writes beside it.
    """
    folder, path = Path(results) / "records", Path(cell)
    if path.suffix == ".json":  # a record file, by its path
        if path.resolve().parent != folder.resolve():
            raise KdbenchError(f"record '{cell}' is not in '{folder}': expected one of its records")
    elif not cell or path.name != cell or cell.startswith("."):
        raise KdbenchError(f"cell '{cell}': expected a cell id of results '{results}', not a path")
    else:
        path = folder / f"{cell}.json"
    if not path.is_file():
        raise KdbenchError(f"no record '{path}': expected a cell id of results '{results}'")
    return folder / path.name


def export_student(results: Path, cell_id: str, fmt: str, out: Path | None = None) -> Path:
    """Write the trained student of ``cell_id`` in ``results`` as ``fmt``; returns the path.

    ``cell_id`` may also be the path of the cell's record in ``<results>/records/``. The
    default path is ``<results>/exports/<cell id>.pt`` (or ``.onnx``). The batch
    dimension stays free: the file takes any batch of the dataset's image shape.
    """
    if fmt not in FORMATS:
        raise KdbenchError(f"export format '{fmt}': expected one of {', '.join(FORMATS)}")
    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:
        raise KdbenchError("export --format onnx needs the onnx package: pip install onnx")
    record = record_file(results, cell_id)
    cell_id = record.stem
    student = read_student(student_path(record, results))
    model = build_student(student)
    example = student.example_input(2)
    out = Path(out) if out else Path(results) / "exports" / f"{cell_id}{FORMATS[fmt]}"
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter notes, not the user's concern
        if fmt == "torchscript":
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(model, example), str(tmp))
        else:
            torch.onnx.export(
                model, (example,), str(tmp), dynamo=False,
                input_names=["images"], output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            )  # fmt: skip
    return out
