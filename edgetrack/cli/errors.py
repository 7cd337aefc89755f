"""How the command line fails: one line on stderr and a non-zero exit code, never a traceback, and the extra to
install when a command's optional packages are missing."""

from __future__ import annotations

import functools
import os
import sys

import click

# The top-level modules each extra of pyproject.toml installs: a command needing an extra names it when one of
# them cannot be imported.
EXTRA_MODULES = {
    "train": ("torch", "yaml", "tqdm", "tensorboard"),
    "deploy": ("onnx", "onnxslim"),
    "report": ("psutil", "matplotlib"),
    "tune": ("optuna",),
}


class EdgetrackGroup(click.Group):
    """Turns every error into one line on stderr and a non-zero exit code instead of a traceback; with
    EDGETRACK_DEBUG=1 the whole chain of exceptions behind the line is printed first.

    An error that carries an ``exit_code`` (a run stopped by SIGTERM: 143, by Ctrl-C: 130) exits with it.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if os.environ.get("EDGETRACK_DEBUG", "") not in ("", "0"):
                print_chain(exc)
            click.echo(f"error: {describe_error(exc)}", err=True)
            ctx.exit(getattr(exc, "exit_code", 130 if isinstance(exc, KeyboardInterrupt) else 1))


def print_chain(exc: BaseException) -> None:
    """The traceback of ``exc`` with every exception behind it, including those a ``raise ... from None`` hid."""
    import traceback

    seen = exc
    while seen is not None:
        seen.__suppress_context__ = False
        seen = seen.__cause__ or seen.__context__
    traceback.print_exception(exc, file=sys.stderr)


def describe_error(exc: BaseException) -> str:
    """One line for the user: the project's own message, or what the system said and what to do about it."""
    import errno

    from edgetrack.runtime.errors import EdgetrackError

    if isinstance(exc, EdgetrackError):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        hint = {
            errno.ENOSPC: "free some space or write somewhere else",
            errno.EDQUOT: "free some space or write somewhere else",
            errno.EROFS: "write somewhere else",
            errno.EACCES: "check the permissions or write somewhere else",
            errno.EPERM: "check the permissions or write somewhere else",
        }.get(exc.errno, "check the path")
        return f"{exc.strerror or exc}{where}; {hint}"
    if isinstance(exc, MemoryError):
        return "out of memory; use smaller inputs or settings"
    if isinstance(exc, KeyboardInterrupt):
        return " ".join(str(exc).split()) or "interrupted"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"unexpected {type(exc).__name__}: {first}; rerun with EDGETRACK_DEBUG=1 for the traceback, and please report it"


def requires(*extras: str):
    """A decorator for a command that needs the optional ``extras`` of pyproject.toml: when a module of theirs is
    missing, the command ends with one line naming the module and the pip command that installs them, e.g.
    "export needs the train and deploy extras (torch is missing): pip install 'edgetrack[train,deploy]'".

    Only a missing module of those extras is caught; any other import error is the command's own.
    """
    modules = {module for extra in extras for module in EXTRA_MODULES[extra]}
    named = f"the {extras[0]} extra" if len(extras) == 1 else f"the {', '.join(extras[:-1])} and {extras[-1]} extras"

    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] not in modules:
                    raise
                name = click.get_current_context().command.name
                raise click.ClickException(f"{name} needs {named} ({exc.name} is missing): pip install 'edgetrack[{','.join(extras)}]'") from None

        return run

    return decorate
