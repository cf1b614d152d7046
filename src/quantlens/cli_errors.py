"""How the command line ends: a user mistake (a bad option as much as a bad config) is one `error:` line
and exit code 2, a Python warning one `warning:` line; never a traceback for either."""

from __future__ import annotations

import warnings

import typer

from quantlens.cli_output import err
from quantlens.errors import QuantlensError


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Python warnings (from quantlens or a library it calls) as one line, without source lines."""
    err.print(f"warning: {message}", highlight=False, markup=False, soft_wrap=True, style="yellow")


def _click_error(name: str) -> type[Exception]:
    """A click exception class by name, wherever typer takes click from (its own copy or the package)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


def _error(message: str) -> None:
    err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)


def run_reporting_errors(app: typer.Typer) -> int:
    """Run `app` (standalone_mode off) and return its exit code, every error said in one line."""
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    usage_error, click_error = _click_error("UsageError"), _click_error("ClickException")
    try:
        code = app(standalone_mode=False)
    except QuantlensError as exc:
        _error(str(exc))
        return 2
    except usage_error as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # the help was printed instead
            command = exc.ctx.command_path if getattr(exc, "ctx", None) else "quantlens"
            message = exc.format_message().replace("Value error, ", "")  # pydantic's prefix, through typer
            _error(f"{message} (see '{command} --help')")
        return 2
    except click_error as exc:
        _error(exc.format_message())
        return exc.exit_code
    except typer.Abort:
        _error("aborted")
        return 1
    finally:
        warnings.showwarning = previous
    return code if isinstance(code, int) else 0
