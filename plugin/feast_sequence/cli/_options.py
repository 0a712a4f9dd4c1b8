"""What every `feast-sequence` command shares (on click, Feast's own CLI library): the same options
(``--repo`` defaults to the current directory everywhere, as `feast` does), errors as one line
(``--debug`` for the traceback), quiet output (``--verbose`` for Spark's own logging).

Imports only click and the standard library: `feast-sequence --help` must not load Feast, Spark or
Great Expectations (tests/test_cli.py); each command imports what it runs when it runs.
"""

from __future__ import annotations

import functools
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Type

import click

from feast_sequence.output import quiet_warnings

REPO_HELP = "feature repository (the folder with feature_store.yaml); default: the current directory"

#: ``-h`` is help on the group and on every command.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 120, "terminal_width": 120}


#: Library errors a user can act on: Feast's (every FeastSequenceError is a FeastError), Redis's, and
#: Spark's (a wrong path or column), by module and class name.
_LIBRARY_ERRORS = (
    ("feast.errors", "FeastError"),
    ("redis.exceptions", "RedisError"),
    ("pyspark.errors", "PySparkException"),
)


def _expected_errors() -> Tuple[Type[BaseException], ...]:
    """Errors printed as one line: the libraries' above, files and bad values. A library's are looked
    up only if it is loaded, as nothing else can have raised them: telling that a repository is
    missing must not import Feast (seconds) first."""
    errors: List[Type[BaseException]] = [OSError, ValueError]
    for module, name in _LIBRARY_ERRORS:
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def one_line(error: BaseException) -> str:
    """``Type: message`` with the message's lines joined, so a log keeps it on one line."""
    message = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class JobCommand(click.Command):
    """A command with ``--debug`` and ``--verbose``: quiet by default, expected errors as one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(*args, **kwargs)
        self.params += [
            click.Option(["--debug"], is_flag=True, help="print the traceback of an error"),
            click.Option(["--verbose", "-v"], is_flag=True, help="every warning, and Spark's own logging"),
        ]

    def invoke(self, ctx: click.Context) -> Any:
        debug, verbose = ctx.params.pop("debug"), ctx.params.pop("verbose")
        ctx.meta["feast_sequence.verbose"] = verbose
        if not verbose:
            quiet_warnings()
        try:
            if "repo" in ctx.params:
                check_repository(ctx.params["repo"])
            return super().invoke(ctx)
        except _expected_errors() as error:  # evaluated only when an error propagates
            if debug:
                raise
            click.echo(f"Error: {one_line(error)} (--debug for the traceback)", err=True)
            ctx.exit(1)


def check_repository(repo: str) -> None:
    """Raise FileNotFoundError unless ``repo`` holds a feature_store.yaml: checked before Feast, whose
    import alone takes seconds, is loaded to find out."""
    config = Path(repo) / "feature_store.yaml"
    if not config.is_file():
        raise FileNotFoundError(
            f"{config.resolve()} does not exist: --repo names the feature repository, the folder with "
            "feature_store.yaml (default: the current directory)."
        )


def verbose() -> bool:
    """Whether the running command was given ``--verbose`` (Spark's own logging)."""
    return bool(click.get_current_context().meta.get("feast_sequence.verbose"))


def repo_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--repo", "-r", default=".", show_default=True, help=REPO_HELP)(function)


def view_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--view", required=True, help="sequence view name")(function)


class IsoTime(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2; 8.1 cannot subscript it
    """An ISO 8601 time; UTC unless it names its zone."""

    name = "ISO-TIME"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO time such as 2010-12-09 or 2010-12-09T14:15:00", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


ISO_TIME = IsoTime()


def selection_from(kind: str, score: Optional[str], score_days: Optional[int], score_n: Optional[int]) -> Any:
    """The ``EventSelection`` the command-line options name (``--selection``, ``--score*``)."""
    from feast_sequence.transformations.selection import LastN, TopScored

    if kind == "last-n":
        return LastN()
    if not (score and score_days and score_n):
        raise click.UsageError("--selection top-scored needs --score, --score-days and --score-n")
    return TopScored(score, score_days, score_n)


def gate_from(validate: bool, report_dir: Optional[str], max_duplicate_rate: Optional[float]) -> Any:
    """The validation gate the command-line options name (``--validate``, ``--report-dir``,
    thresholds): an ``EventSourceGate``, or None without ``--validate``."""
    if not validate:
        return None
    from feast_sequence.transformations._job import EventSourceGate
    from feast_sequence.validations.event_source import EventSourceChecks

    checks = EventSourceChecks(max_duplicate_rate=max_duplicate_rate)
    return EventSourceGate(checks, Path(report_dir) if report_dir else None)


def selection_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--selection`` and ``--score*``; the command gets ``selection``, the ``EventSelection`` they name."""

    @functools.wraps(function)
    def with_selection(
        *args: Any,
        selection: str,
        score: Optional[str],
        score_days: Optional[int],
        score_n: Optional[int],
        **kwargs: Any,
    ) -> Any:
        return function(*args, selection=selection_from(selection, score, score_days, score_n), **kwargs)

    for option in reversed(
        [
            click.option(
                "--selection", type=click.Choice(["last-n", "top-scored"]), default="last-n", show_default=True
            ),
            click.option("--score", help="top-scored: Spark SQL expression, e.g. 'quantity * unit_price'"),
            click.option("--score-days", type=int, help="top-scored: look back this many days"),
            click.option("--score-n", type=int, help="top-scored: events per entity"),
        ]
    ):
        with_selection = option(with_selection)
    return with_selection


def duplicate_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """The event-source suite's duplicate rule (validations/event_source.py), as an option."""
    return click.option(
        "--max-duplicate-rate",
        type=float,
        help="largest share of events that may repeat an identity the store does not collapse "
        "(default 0.01); with this option, repeats the view's dedup_by collapses count too",
    )(function)


def gate_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--validate``, ``--report-dir`` and the thresholds; the command gets ``gate``, the validation
    gate they name (None: no validation)."""

    @functools.wraps(function)
    def with_gate(
        *args: Any, validate: bool, report_dir: Optional[str], max_duplicate_rate: Optional[float], **kwargs: Any
    ) -> Any:
        return function(*args, gate=gate_from(validate, report_dir, max_duplicate_rate), **kwargs)

    for option in reversed(
        [
            click.option("--validate", is_flag=True, help="validate the selected events first (event-source suite)"),
            click.option("--report-dir", help="folder for the validation report (GE Data Docs)"),
        ]
    ):
        with_gate = option(with_gate)
    return duplicate_option(with_gate)


def run(command: click.Command, argv: Optional[List[str]], prog_name: str) -> int:
    """Run ``command`` on ``argv``; returns the exit code: 0, 1 for an error, 2 for a usage error."""
    try:
        result = command.main(
            args=list(sys.argv[1:] if argv is None else argv), prog_name=prog_name, standalone_mode=False
        )
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 1
    return result if isinstance(result, int) else 0
