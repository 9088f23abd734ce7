"""Validation that builds everything but trains nothing: every bad input is exit 2, one
line per mistake naming the key, and nothing written anywhere."""

from __future__ import annotations

import os
import pickle
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pytest
import torch
from annotated_types import Ge, Gt, Interval, Le, Lt, MinLen
from click.testing import CliRunner

import kdbench.cli.app
from conftest import TINY
from kdbench import DistillationLoss, KdbenchError, LossInputs
from kdbench.builtin.models_small import cnn
from kdbench.cli import cli
from kdbench.core.plugins import load_plugins
from kdbench.core.registry import Entry
from kdbench.engine.context import RunContext

GOOD = TINY.format(extra_pairs="")


class Tempered(DistillationLoss):
    """A test loss whose parameters carry range constraints and name feature taps."""

    def __init__(
        self,
        *,
        temperature: Annotated[float, Gt(0)] = 4.0,
        alpha: Annotated[float, Interval(ge=0, le=1)] = 0.9,
        taps: tuple[str, ...] = (),
        tag: Annotated[str, MinLen(2)] = "kd",
    ) -> None:
        super().__init__()
        self.temperature, self.alpha, self.features = temperature, alpha, tuple(taps)

    def forward(self, inputs: LossInputs):
        return inputs.student_logits.sum() * 0


def tiny(
    num_classes: int,
    in_channels: int,
    *,
    width: Annotated[int, Ge(1)] = 4,
    pretrained: bool = False,
) -> torch.nn.Module:
    """A test model whose pretrained weights are never there, as offline."""
    if pretrained:
        raise KdbenchError("could not load pretrained weights for 'tiny': no network")
    return cnn(num_classes, in_channels, width=width)


@pytest.fixture(scope="module")
def plugins():
    """The installed plugins plus the constrained test loss and model."""
    loaded = load_plugins()
    loaded.registry.add(Entry("losses", "tempered", Tempered, "tests", "test loss"))
    for kind in ("teachers", "students"):
        loaded.registry.add(
            Entry(kind, "tiny", tiny, "tests", "test model", {"stage1": "stages.0"})
        )
    return loaded


@pytest.fixture
def invoke(plugins, tmp_path, monkeypatch) -> Callable[..., tuple[int, str]]:
    """Run the CLI in tmp_path with the test plugins; returns (exit code, output)."""
    monkeypatch.setattr(kdbench.cli.app, "_context", lambda: RunContext(plugins=plugins))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result.exit_code, result.output

    return run


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


# --- how each bad input is made ---------------------------------------------------------


def sub(old: str, new: str) -> Callable[[Path], str]:
    """The good file with one replacement (which must apply)."""

    def make(_folder: Path) -> str:
        assert old in GOOD, old
        return GOOD.replace(old, new, 1)

    return make


def add(text: str, after: str = "[losses.kd]\ntemperature = 4.0\n") -> Callable[[Path], str]:
    return sub(after, after + textwrap.dedent(text))


def with_checkpoint(write: Callable[[Path], object]) -> Callable[[Path], str]:
    """The good file whose teacher comes from the checkpoint ``write`` makes."""

    def make(folder: Path) -> str:
        path = write(folder)
        name = path if isinstance(path, str) else Path(path).name
        return GOOD.replace(
            "teacher_params = { width = 8 }",
            f"teacher_params = {{ width = 8 }}\nteacher_checkpoint = '{name}'",
        )

    return make


def good_state(folder: Path) -> Path:
    torch.manual_seed(0)
    path = folder / "teacher.pt"
    torch.save(cnn(10, 1, width=8).state_dict(), path)
    return path


def truncated(folder: Path) -> Path:
    path = good_state(folder)
    path.write_bytes(path.read_bytes()[:300])
    return path


def empty(folder: Path) -> Path:
    path = folder / "teacher.pt"
    path.write_bytes(b"")
    return path


def directory(folder: Path) -> Path:
    path = folder / "teacher.pt"
    path.mkdir()
    return path


def wrong_architecture(folder: Path) -> Path:
    path = folder / "teacher.pt"
    torch.save(cnn(10, 1, width=4).state_dict(), path)
    return path


class Evil:
    def __reduce__(self):
        return (os.system, ("echo hacked",))


def unknown_global(folder: Path) -> Path:
    path = folder / "teacher.pt"
    torch.save({"state_dict": Evil()}, path, pickle_module=pickle)
    return path


def not_a_state_dict(folder: Path) -> Path:
    path = folder / "teacher.pt"
    torch.save([1, 2, 3], path)
    return path


def random_bytes(folder: Path) -> Path:
    path = folder / "teacher.pt"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def raw(data: bytes) -> Callable[[Path], bytes]:
    return lambda _folder: data


def pairs(count: int, seeds: int) -> Callable[[Path], str]:
    """``count`` pairs with distinct students and ``seeds`` seeds: a large matrix."""

    def make(_folder: Path) -> str:
        text = GOOD.replace("seeds = [0, 1]", f"seeds = {list(range(seeds))}")
        pair = '\n[[pairs]]\nteacher = "cnn"\nstudent = "mlp"\nstudent_params = {{ hidden = {} }}\n'
        extra = "".join(pair.format(17 + i) for i in range(count - 1))
        return text.replace("[losses.kd]", extra + "\n[losses.kd]")

    return make


KD = "[losses.kd]\ntemperature = 4.0\n"
TEMPERED = '[losses.t]\nloss = "tempered"\n'

# (id, how the file is made, fragments every expected line has, in order: one per error)
CASES = [
    # types of plugin parameters, from their annotations
    (
        "loss-param-string",
        sub("temperature = 4.0", 'temperature = "hot"'),
        [["losses.kd.temperature", "valid number", "'hot'"]],
    ),
    ("loss-param-bool", add("alpha = true\n"), [["losses.kd.alpha", "valid number"]]),
    (
        "model-param-string",
        sub("hidden = 16", 'hidden = "sixteen"'),
        [["pairs[0].student_params.hidden", "valid integer", "'sixteen'"]],
    ),
    (
        "model-param-float",
        sub("hidden = 16", "hidden = 16.5"),
        [["pairs[0].student_params.hidden", "valid integer"]],
    ),
    (
        "executor-param-string",
        add('[executor]\nparams = { threads = "many" }\n'),
        [["executor.params.threads", "valid integer", "'many'"]],
    ),
    (
        "dataset-param-string",
        sub("[datasets.digits]", '[datasets.digits]\ntest_fraction = "a quarter"'),
        [["datasets.digits.test_fraction", "valid number"]],
    ),
    # ranges, from annotated_types constraints
    (
        "range-gt",
        add(TEMPERED + "temperature = -4\n"),
        [["losses.t.temperature", "must be > 0, got -4"]],
    ),
    (
        "range-interval",
        add(TEMPERED + "alpha = 7.5\n"),
        [["losses.t.alpha", "must be <= 1, got 7.5"]],
    ),
    (
        "range-min-length",
        add(TEMPERED + 'tag = "x"\n'),
        [["losses.t.tag", "at least 2 characters"]],
    ),
    (
        "range-model-ge",
        sub(
            'student = "mlp"\nstudent_params = { hidden = 16 }',
            'student = "tiny"\nstudent_params = { width = 0 }',
        ),
        [["pairs[0].student_params.width", "must be >= 1, got 0"]],
    ),
    (
        "tuple-member-type",
        add(TEMPERED + "taps = [1]\n"),
        [["losses.t.taps", "[0]", "valid string"]],
    ),
    (
        "builtin-kd-temperature",
        sub("temperature = 4.0", "temperature = -4"),
        [["losses.kd.temperature", "must be > 0, got -4"]],
    ),
    (
        "builtin-kd-alpha",
        add("alpha = 7.5\n"),
        [["losses.kd.alpha", "must be <= 1, got 7.5"]],
    ),
    # values only building finds
    (
        "width-zero",
        sub("teacher_params = { width = 8 }", "teacher_params = { width = 0 }"),
        [["pairs[0].teacher"]],
    ),
    ("width-negative", sub("hidden = 16", "hidden = -3"), [["pairs[0].student"]]),
    (
        "test-fraction-out-of-range",
        sub("[datasets.digits]", "[datasets.digits]\ntest_fraction = 1.5"),
        [["datasets.digits.test_fraction", "must be < 1, got 1.5"]],
    ),
    (
        "executor-threads-zero",
        add("[executor]\nparams = { threads = 0 }\n"),
        [["executor.params", "threads"]],
    ),
    (
        "missing-tap",
        add(TEMPERED + 'taps = ["stage9"]\n'),
        [["losses.t", "no feature tap 'stage9'"]],
    ),
    (
        "offline-pretrained",
        sub(
            'teacher = "cnn"\nteacher_params = { width = 8 }',
            'teacher = "tiny"\nteacher_params = { pretrained = true }',
        ),
        [["pairs[0].teacher", "pretrained weights"]],
    ),
    (
        "second-pair-named",
        sub(
            "[losses.kd]",
            '[[pairs]]\nteacher = "cnn"\nstudent = "tiny"\n'
            "student_params = { pretrained = true }\n\n[losses.kd]",
        ),
        [["pairs[1].student", "pretrained weights"]],
    ),
    # teacher checkpoints of each bad kind
    (
        "checkpoint-truncated",
        with_checkpoint(truncated),
        [["pairs[0].teacher_checkpoint", "not a complete PyTorch weights file"]],
    ),
    (
        "checkpoint-empty",
        with_checkpoint(empty),
        [["pairs[0].teacher_checkpoint", "is empty (0 bytes)"]],
    ),
    (
        "checkpoint-directory",
        with_checkpoint(directory),
        [["pairs[0].teacher_checkpoint", "is a folder"]],
    ),
    (
        "checkpoint-wrong-architecture",
        with_checkpoint(wrong_architecture),
        [["pairs[0].teacher_checkpoint", "does not fit model 'cnn'"]],
    ),
    (
        "checkpoint-unknown-global",
        with_checkpoint(unknown_global),
        [["pairs[0].teacher_checkpoint", "is refused"]],
    ),
    (
        "checkpoint-not-a-state-dict",
        with_checkpoint(not_a_state_dict),
        [["pairs[0].teacher_checkpoint", "no state_dict"]],
    ),
    (
        "checkpoint-random-bytes",
        with_checkpoint(random_bytes),
        [["pairs[0].teacher_checkpoint", "checkpoint '"]],
    ),
    (
        "checkpoint-missing",
        with_checkpoint(lambda folder: "nowhere.pt"),
        [["pairs[0].teacher_checkpoint", "does not exist"]],
    ),
    (
        "checkpoint-path-5000-chars",
        with_checkpoint(lambda folder: "c" * 5000 + ".pt"),
        [["pairs[0].teacher_checkpoint", "cannot be opened"]],
    ),
    # the file itself
    (
        "latin-1",
        raw(GOOD.replace("tiny", "tïny").encode("latin-1")),
        [["not UTF-8", "byte 0xef on line 3"]],
    ),
    ("utf-16", raw(GOOD.encode("utf-16")), [["not UTF-8", "line 1"]]),
    ("random-bytes", raw(bytes(range(256))), [["not UTF-8"]]),
    ("toml-syntax", sub("[benchmark]", "[benchmark"), [["not valid TOML", "line 2", "column"]]),
    ("huge-file", lambda _f: GOOD + "#" * (1 << 20), [["bytes is larger than the 1,048,576"]]),
    # shape and types of the file's own keys
    (
        "loss-name-int",
        add("[losses.x]\nloss = 3\n"),
        [["losses.x.loss", "must be the name of a registered loss, got 3"]],
    ),
    ("loss-table-int", sub(KD, "[losses]\nkd = 3\n"), [["losses.kd", "valid dictionary"]]),
    ("seeds-string", sub("seeds = [0, 1]", 'seeds = "0"'), [["benchmark.seeds", "valid list"]]),
    ("seeds-empty", sub("seeds = [0, 1]", "seeds = []"), [["benchmark.seeds", "at least 1"]]),
    ("seeds-duplicate", sub("seeds = [0, 1]", "seeds = [1, 1]"), [["benchmark.seeds", "unique"]]),
    (
        "pairs-int",
        lambda _f: "pairs = 3\n" + GOOD.replace("[[pairs]]", "[[pairx]]"),
        [["pairs", "valid list"], ["pairx", "unknown key"]],
    ),
    ("name-deleted", sub('name = "tiny"\n', ""), [["benchmark.name", "required"]]),
    (
        "datasets-empty",
        lambda _f: "datasets = {}\n" + GOOD.replace("[datasets.digits]\n", ""),
        [["datasets", "at least 1"]],
    ),
    (
        "batch-size-zero",
        sub("batch_size = 128\noptimizer", "batch_size = 0\noptimizer"),
        [["recipe.batch_size", "greater than 0"]],
    ),
    (
        "unknown-top-level-key",
        add("[benchmarks]\nname = 'x'\n"),
        [["benchmarks", "unknown key", "did you mean 'benchmark'"]],
    ),
    (
        "unknown-pair-loss",
        sub('student = "mlp"', 'student = "mlp"\nloss_params = { kdd = { alpha = 1.0 } }'),
        [["pairs[0].loss_params.kdd", "did you mean 'kd'"]],
    ),
    # limits
    (
        "too-many-seeds",
        sub("seeds = [0, 1]", f"seeds = {list(range(101))}"),
        [["benchmark.seeds", "101 seeds", "--yes"]],
    ),
    (
        "epochs-too-many",
        sub("epochs = 2", "epochs = 20000"),
        [["recipe.epochs", "20000 epochs is more than 10,000", "--yes"]],
    ),
    (
        "epochs-1e11",
        sub("epochs = 3", "epochs = 1e11"),
        [["teacher_recipe.epochs", "valid integer", "100000000000.0"]],
    ),
    (
        "epochs-10-to-the-11",
        sub("epochs = 3", "epochs = 100_000_000_000"),
        [["teacher_recipe.epochs", "100000000000 epochs is more than 10,000"]],
    ),
    (
        "recipe-string-for-number",
        sub("batch_size = 128\noptimizer", 'batch_size = "128"\noptimizer'),
        [["recipe.batch_size", "valid integer", "'128'"]],
    ),
    (
        "pair-epochs",
        sub('student = "mlp"', 'student = "mlp"\nrecipe = { epochs = 50000 }'),
        [["pairs[0].recipe.epochs", "50000 epochs"]],
    ),
    (
        "max-cells",
        sub('name = "tiny"', 'name = "tiny"\nmax_cells = 3'),
        [["benchmark", "4 cells", "limit of 3"]],
    ),
    (
        "cells-over-default",
        pairs(6, 100),
        [["benchmark", "1,200 cells", "limit of 1,000", "--yes"]],
    ),
    ("cells-far-over-default", pairs(60, 100), [["benchmark", "up to 12,000 cells"]]),
    # fp16's per-rank gradient scaling cannot train several devices as one
    (
        "fp16-on-two-devices",
        sub(
            "batch_size = 128\noptimizer", 'batch_size = 128\namp = "fp16"\ndevices = 2\noptimizer'
        ),
        [["recipe.amp", 'amp = "fp16" is not supported with devices > 1', "bf16"]],
    ),
    (
        "fp16-on-a-pair-of-two-devices",
        sub('student = "mlp"', 'student = "mlp"\nrecipe = { amp = "fp16", devices = 2 }'),
        [["pairs[0].recipe.amp", "devices = 2"]],
    ),
    # several mistakes at once, each on its own line
    (
        "several-mistakes",
        lambda f: (
            GOOD.replace("temperature = 4.0", 'temperature = "hot"')
            .replace("hidden = 16", 'hidden = "sixteen"')
            .replace("[losses.kd]", "[losses.kdd]\n[losses.kd]")
        ),
        [
            ["pairs[0].student_params.hidden"],
            ["losses.kdd", "unknown loss"],
            ["losses.kd.temperature"],
        ],
    ),
    (
        "several-build-mistakes",
        lambda f: with_checkpoint(empty)(f).replace(
            'student = "mlp"\nstudent_params = { hidden = 16 }',
            'student = "tiny"\nstudent_params = { pretrained = true }',
        ),
        [["pairs[0].teacher_checkpoint", "is empty"], ["pairs[0].student", "pretrained"]],
    ),
]


def write_case(folder: Path, make: Callable[[Path], str | bytes]) -> Path:
    content = make(folder)
    path = folder / "bench.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_one_line_per_mistake_and_writes_nothing(
    invoke, tmp_path, command, make, expected
):
    bench = write_case(tmp_path, make)
    before = files_under(tmp_path)
    args = [command, str(bench)] + (
        ["--out", str(tmp_path / "out"), "--quiet"] if command == "run" else []
    )
    code, output = invoke(*args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == len(expected), output
    for line in lines:
        assert line.startswith(f"kdbench: error: {bench}: "), line
    for fragments in expected:
        matching = [line for line in lines if all(f in line for f in fragments)]
        assert matching, f"no line has all of {fragments}:\n{output}"
    assert not (tmp_path / "out").exists()
    assert files_under(tmp_path) == before  # no results/, no teachers/, nothing


def test_good_file_validates_and_builds_in_seconds(invoke, tmp_path):
    bench = write_case(tmp_path, lambda _f: GOOD)
    code, output = invoke("validate", str(bench))
    assert code == 0, output
    assert "ok (4 cells)" in output


def test_fp16_is_refused_on_the_devices_the_command_line_asks_for(invoke, tmp_path):
    fp16 = GOOD.replace("batch_size = 128\noptimizer", 'batch_size = 128\namp = "fp16"\noptimizer')
    bench = write_case(tmp_path, lambda _f: fp16)
    out = ["--out", str(tmp_path / "out"), "--dry-run"]
    assert invoke("run", str(bench), *out)[0] == 0  # one device: fp16 is fine
    code, output = invoke("run", str(bench), *out, "--devices", "2")
    assert code == 2, output
    assert output.strip() == (
        f'kdbench: error: {bench}: recipe.amp: amp = "fp16" is not supported with devices > 1 '
        "(each rank's gradient scaler would skip steps on its own overflows); use "
        'amp = "bf16" or "off" (devices = 2)'
    )


def test_good_checkpoint_passes_validation(invoke, tmp_path):
    bench = write_case(tmp_path, with_checkpoint(good_state))
    code, output = invoke("validate", str(bench))
    assert code == 0, output


@pytest.mark.parametrize(
    "make",
    [
        sub("seeds = [0, 1]", f"seeds = {list(range(101))}"),
        sub("epochs = 2", "epochs = 20000"),
        pairs(6, 100),
    ],
    ids=["seeds", "epochs", "cells"],
)
def test_yes_lifts_the_limits(invoke, tmp_path, make):
    bench = write_case(tmp_path, make)
    assert invoke("validate", str(bench))[0] == 2
    code, output = invoke("validate", str(bench), "--yes")
    assert code == 0, output


def test_max_cells_in_the_file_lifts_the_cell_limit(invoke, tmp_path):
    bench = write_case(
        tmp_path,
        lambda f: pairs(6, 100)(f).replace('name = "tiny"', 'name = "tiny"\nmax_cells = 1200'),
    )
    code, output = invoke("validate", str(bench))
    assert code == 0, output


@pytest.mark.parametrize("target", ["folder", "missing", "long"])
def test_unreadable_file_argument_is_one_line(invoke, tmp_path, target):
    path = {"folder": tmp_path, "missing": tmp_path / "nope.toml", "long": tmp_path / ("x" * 5000)}[
        target
    ]
    code, output = invoke("validate", str(path))
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1
    assert len(output) < 400  # a 5,000-character path is shortened
    assert "Traceback" not in output


def test_debug_shows_the_traceback(plugins, tmp_path, monkeypatch):
    monkeypatch.setattr(kdbench.cli.app, "_context", lambda: RunContext(plugins=plugins))
    bench = write_case(tmp_path, sub("temperature = 4.0", 'temperature = "hot"'))
    result = CliRunner().invoke(cli, ["--debug", "validate", str(bench)])
    assert isinstance(result.exception, KdbenchError)


def test_constraints_do_not_change_identity_of_cells(invoke, tmp_path):
    """max_cells steers a run, so it leaves the config hash (and cell ids) alone."""
    bench = write_case(tmp_path, lambda _f: GOOD)
    _, plain = invoke("run", str(bench), "--dry-run")
    bench.write_text(
        GOOD.replace('name = "tiny"', 'name = "tiny"\nmax_cells = 50'), encoding="utf-8"
    )
    _, limited = invoke("run", str(bench), "--dry-run")
    assert plain.split("config hash")[1] == limited.split("config hash")[1]


# --- parameter checking from annotations, directly ------------------------------------


def factory(
    num_classes: int,
    in_channels: int,
    *,
    lr: Annotated[float, Gt(0), Lt(2)] = 0.1,
    depth: Annotated[int, Ge(1), Le(8)] = 2,
    shape: tuple[int, ...] = (1,),
    root: Path = Path("."),
    name: str = "x",
) -> None:
    """A model factory whose parameters carry every kind of constraint."""


def unresolvable(*, value: NotDefinedAnywhere = 1) -> None:  # noqa: F821 - on purpose
    """A plugin whose annotation names a type that only exists for type checkers."""


def entry(obj, kind: str = "students") -> Entry:
    return Entry(kind, "thing", obj, "tests", "")


@pytest.mark.parametrize(
    ("params", "key", "message"),
    [
        ({"lr": 0}, "p.lr", "must be > 0, got 0"),
        ({"lr": 2.5}, "p.lr", "must be < 2, got 2.5"),
        ({"depth": 0}, "p.depth", "must be >= 1, got 0"),
        ({"depth": 9}, "p.depth", "must be <= 8, got 9"),
        ({"lr": "0.1"}, "p.lr", "must be a valid number, got '0.1'"),
        ({"depth": "2"}, "p.depth", "must be a valid integer, got '2'"),
        ({"depth": True}, "p.depth", "must be a valid integer, got True"),
        ({"depth": 2.5}, "p.depth", "must be a valid integer, got 2.5"),
        ({"shape": [1, "a"]}, "p.shape", "[1]: must be a valid integer, got 'a'"),
        ({"name": 3}, "p.name", "must be a valid string, got 3"),
    ],
)
def test_annotations_reject_wrong_types_and_ranges_with_the_key(params, key, message):
    errors = entry(factory).param_errors(params, file="f.toml", key="p")
    assert [str(e) for e in errors] == [f"f.toml: {key}: {message}"]


@pytest.mark.parametrize(
    "params",
    [{"lr": 1}, {"lr": 0.5, "depth": 8}, {"shape": [2, 3]}, {"root": "data/"}, {}],
    ids=["int-for-float", "bounds", "array-for-tuple", "string-for-path", "defaults"],
)
def test_annotations_accept_what_toml_can_say(params):
    assert entry(factory).param_errors(params, file="f.toml", key="p") == []


def test_every_parameter_mistake_is_collected():
    errors = entry(factory).param_errors(
        {"lr": -1, "depth": "deep", "widht": 3}, file="f.toml", key="p"
    )
    assert sorted(e.key for e in errors) == ["p.depth", "p.lr", "p.widht"]
    with pytest.raises(KdbenchError):
        entry(factory).check_params({"lr": -1}, file="f.toml", key="p")


def test_unresolvable_annotation_is_not_checked():
    assert entry(unresolvable, "losses").param_errors({"value": "x"}, file=None, key="p") == []


def test_loss_constructor_annotations_are_checked():
    errors = entry(Tempered, "losses").param_errors({"alpha": -0.5}, file=None, key="losses.t")
    assert [str(e) for e in errors] == ["losses.t.alpha: must be >= 0, got -0.5"]


@pytest.mark.parametrize(
    ("kind", "name", "params", "key"),
    [
        ("students", "mlp", {"hidden": "sixteen"}, "p.hidden"),
        ("losses", "kd", {"temperature": "hot"}, "p.temperature"),
        ("executors", "local", {"threads": 2.5}, "p.threads"),
        ("datasets", "digits", {"split_seed": "zero"}, "p.split_seed"),
    ],
)
def test_builtin_annotations_are_checked(plugins, kind, name, params, key):
    errors = plugins.registry.get(kind, name).param_errors(params, file=None, key="p")
    assert [e.key for e in errors] == [key]


def test_plan_without_validation_checks_the_file_only(plugins, tmp_path):
    """kdbench status counts cells of a file whose data is elsewhere; run would refuse it."""
    from kdbench.core.errors import ConfigError
    from kdbench.engine.runner import plan

    missing = f'[datasets.fashion_mnist]\nroot = "{tmp_path / "nowhere"}"'
    bench = write_case(tmp_path, sub("[datasets.digits]", missing))
    context = RunContext(plugins=plugins)
    assert len(plan(bench, context).cells) == 4
    with pytest.raises(ConfigError, match=r"datasets\.fashion_mnist: .*apt-get install"):
        plan(bench, context, validate=True)
