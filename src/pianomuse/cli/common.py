"""What every subcommand shares: the app, one-line user errors, the model and sampling
options, and the steering options made from `Steering`'s table of controls."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pianomuse.bundled import default_model
from pianomuse.errors import FieldError, UserError
from pianomuse.steering import Steering

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Piano Muse: an RWKV-7 piano copilot over REMI tokens.",
)

F = TypeVar("F", bound=Callable)
Opt = typer.Option

# Settings whose command-line option is not named after them.
_OPTION_OF = {"first_bar": "bars", "last_bar": "bars"}


def _message(e: Exception) -> str:
    """A user error's line, naming the option a bad setting came from."""
    if isinstance(e, FieldError):
        return f"--{_OPTION_OF.get(e.field, e.field).replace('_', '-')} {e.problem}"
    return str(e)


def user_errors(fn: F) -> F:
    """Turn the exceptions a user can cause into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
            typer.echo(f"error: {_message(e)}", err=True)
            raise typer.Exit(1) from None
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] != "torch":
                raise
            from pianomuse.modelfiles import TORCH_MISSING

            typer.echo(f"error: {TORCH_MISSING}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# Options shared by the commands that use a model.
ModelOpt = Annotated[
    Path | None,
    Opt("--model", "--model_path", "--model-path", help="Model file; default: the bundled model."),
]
NO_DEFAULT_MODEL = (
    "no default model is bundled yet; pass --model PATH (a model trained with "
    "`pianomuse train`, e.g. RUN_DIR/best.safetensors)"
)


def model_path(model: Path | None, parts: bool = False) -> Path:
    """The model to use: the one given, or the bundled default for the job (`parts`: it
    needs chords or parts)."""
    model = model or default_model(parts)
    if model is None:
        raise UserError(NO_DEFAULT_MODEL)
    return model


def _with_options(fn: F, param: str, options: list[inspect.Parameter], build: Callable) -> F:
    """`fn` with the command-line `options` in place of its parameter `param`, which gets
    `build(**their values)`: settings built once, at the edge, and passed whole."""
    names = [o.name for o in options]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names}
        return fn(*args, **{param: build(**values)}, **kwargs)

    own = [p for p in inspect.signature(fn).parameters.values() if p.name != param]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=_hint(p, fn)) for p in own]
    wrapper.__signature__ = inspect.Signature([*params, *options])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*params, *options]}
    return wrapper  # type: ignore[return-value]


def _hint(p: inspect.Parameter, fn: Callable) -> Any:
    """A parameter's annotation resolved as typer resolves it. A name the module imports for
    type checking only (a settings class another decorator replaces, whose module the command
    line does not import until it runs) stays a string."""
    if not isinstance(p.annotation, str):
        return p.annotation
    try:
        return eval(p.annotation, fn.__globals__)  # noqa: S307 - a type hint of our own
    except NameError:
        return p.annotation


def _option(name: str, kind: Any, default: Any, *decls: str, help: str) -> inspect.Parameter:
    annotation = Annotated[kind, Opt(*decls, help=help)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)  # fmt: skip


SAMPLING_OPTIONS = [
    _option("temperature", float, 1.0, help="Sampling temperature (0 = greedy)."),
    _option("top_p", float | None, 0.95, "--top-p", "--top_p", help="Nucleus sampling mass."),
    _option("top_k", int | None, None, "--top-k", "--top_k", help="Keep the k likeliest tokens."),
    _option("seed", int, 0, help="Random seed: the same seed gives the same MIDI."),
]


def _sampling(**values: Any) -> Any:
    from pianomuse.generate.sampling import Sampling

    return Sampling(**values)


def sampling_options(fn: F) -> F:
    """Give a command the sampling options in place of its `sampling` parameter, which gets
    them as one `Sampling`."""
    return _with_options(fn, "sampling", SAMPLING_OPTIONS, _sampling)


@dataclass(frozen=True)
class ModelChoice:
    """The model a command runs and where: --model, --device, --precision, --style,
    --threads, --runtime."""

    path: Path | None  # the model file; None: the bundled one for the job
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    precision: str | None = None  # the weights inference runs on a CPU (None: the default)
    style: Path | None = None  # a style tuned for the model (`pianomuse tune`)
    threads: int | None = None  # CPU threads (None: `pianomuse.threads`' policy)
    runtime: str = "auto"  # auto (ONNX Runtime where the export is there), onnx or torch

    def __post_init__(self) -> None:
        from pianomuse.modelfiles import check_runtime
        from pianomuse.threads import check_threads

        if self.threads is not None:
            check_threads(self.threads)
        check_runtime(self.runtime)

    def copilot(self, parts: bool = False, session: bool = False) -> Any:
        """A `Copilot` of the model (`parts`: the job needs chords or parts), on the threads
        the choice says (`pianomuse.threads.inference_threads`): one on ONNX Runtime, and one
        for a `session` (the web server, a live jam), unless told: how busy the machine is
        when it starts says nothing of the hours after."""
        from pianomuse.copilot import Copilot
        from pianomuse.generate.engine import check_precision
        from pianomuse.modelfiles import file_sha, wants_onnx
        from pianomuse.threads import inference_threads

        style = None
        if self.style is not None:
            from pianomuse.modelfiles import require_torch

            require_torch()  # a style changes the weights: PyTorch runs them
            from pianomuse.style import Style

            style = Style.load(self.style)
        path = model_path(self.path, parts)
        precision, styled = check_precision(self.precision), style is not None
        onnx = wants_onnx(path, runtime=self.runtime, precision=precision, device=self.device,
                          sha=file_sha(path), styled=styled)  # fmt: skip
        threads = inference_threads(self.threads, onnx=onnx, session=session)
        return Copilot(path, device=self.device, precision=self.precision, style=style,
                       runtime="onnx" if onnx else "torch", threads=threads)  # fmt: skip


MODEL_OPTIONS = [
    _option(
        "model",
        Path | None,
        None,
        "--model",
        "--model_path",
        "--model-path",
        help="Model file; default: the bundled model.",
    ),  # fmt: skip
    _option("device", str, "cpu", help="cpu, cuda, cuda:N or auto."),
    _option(
        "precision",
        str | None,
        None,
        help="Weights inference runs on a CPU: int8 (decoding 2-3x faster, the default) or fp32.",
    ),  # fmt: skip
    _option("style", Path | None, None, help="A style tuned for the model (pianomuse tune)."),
    _option(
        "threads",
        int | None,
        None,
        help="CPU threads (default 1 on ONNX Runtime and for serve and live; else the cores "
        "idle at the start).",
    ),  # fmt: skip
    _option(
        "runtime",
        str,
        "auto",
        help="auto (ONNX Runtime where the model has its export beside it, else PyTorch), "
        "onnx or torch.",
    ),  # fmt: skip
]


def model_options(fn: F) -> F:
    """Give a command --model, --device, --precision, --style, --threads and --runtime in place
    of its `model` parameter, which gets them as one `ModelChoice`."""
    return _with_options(fn, "model", MODEL_OPTIONS, _model_choice)


def _model_choice(
    model: Path | None,
    device: str,
    precision: str | None,
    style: Path | None,
    threads: int | None,
    runtime: str,
) -> ModelChoice:
    return ModelChoice(model, device, precision, style, threads, runtime)


def steering_options(fn: F) -> F:
    """Give a command an option per steering control (`Steering.controls()`: its name, type
    and help) in place of its `steering` parameter, which gets them as one `Steering`."""
    options = []
    for name, kind, default, control in Steering.controls():
        flag = "--" + name.replace("_", "-")
        decls = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,)
        options.append(_option(name, kind, default, *decls, help=control.help))
    return _with_options(fn, "steering", options, Steering)


def copilot_command(fn: F) -> F:
    """A command that writes music: registered, with one-line errors, and its model,
    sampling and steering options given to it as one object each."""
    return app.command()(user_errors(model_options(sampling_options(steering_options(fn)))))
