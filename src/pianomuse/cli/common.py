"""What every subcommand shares: the app, one-line user errors, the model and sampling
options, and the steering options made from `Steering`'s table of controls."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
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

    return wrapper  # type: ignore[return-value]


# Options shared by the commands that use a model.
ModelOpt = Annotated[
    Path | None,
    Opt("--model", "--model_path", "--model-path", help="Model file; default: the bundled model."),
]
TemperatureOpt = Annotated[float, Opt(help="Sampling temperature (0 = greedy).")]
TopPOpt = Annotated[float | None, Opt("--top-p", "--top_p", help="Nucleus sampling mass.")]
TopKOpt = Annotated[int | None, Opt("--top-k", "--top_k", help="Keep the k most likely tokens.")]
SeedOpt = Annotated[int, Opt(help="Random seed: the same seed gives the same MIDI.")]
DeviceOpt = Annotated[str, Opt(help="cpu, cuda, cuda:N or auto.")]
InferencePrecisionOpt = Annotated[
    str | None,
    Opt(help="Weights inference runs on a CPU: int8 (decoding 2-3x faster, the default) or fp32."),
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


def sampling_of(temperature: float, top_p: float | None, top_k: int | None, seed: int) -> Any:
    """The sampling settings, built once here and passed whole."""
    from pianomuse.generate.sampling import Sampling

    return Sampling(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)


def steering_options(fn: F) -> F:
    """Give a command an option per steering control (`Steering.controls()`: its name, type
    and help) in place of its `steering` parameter, which gets them as one `Steering`."""
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()]
    names = Steering.names()
    added = []
    for name, kind, default, control in Steering.controls():
        flag = "--" + name.replace("_", "-")
        decls = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,)
        annotation = Annotated[kind, Opt(*decls, help=control.help)]
        added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                       annotation=annotation))  # fmt: skip

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names}
        return fn(*args, steering=Steering(**values), **kwargs)

    params = [p for p in own if p.name != "steering"]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
    wrapper.__signature__ = inspect.Signature([*params, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*params, *added]}
    return wrapper  # type: ignore[return-value]
