"""What the commands (`feast-sequence`, `make demo`) print besides their results: each warning once,
and progress bars on a terminal. Called by the commands when they start, never on import."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from typing import Any, Callable, Iterator, Optional, Set, TextIO, Tuple, Type, Union

#: Loggers that speak at INFO about their own plumbing ("Closing down clientserver connection").
_CHATTY_LOGGERS = ("py4j",)


def quiet_warnings() -> None:
    """Print each distinct warning (category and message) once per process.

    Warning filters cannot do it: "default" and "once" both remember what they showed in registries
    that every ``warnings.catch_warnings()`` clears (Feast and its libraries enter many), so Feast's
    experimental-SparkSource warning came back on each registry read, 88 times in `make demo`, with
    Feast's own "once" filter in place. This wraps ``warnings.showwarning`` instead, which
    ``catch_warnings`` restores on exit rather than resets.
    """
    if getattr(warnings.showwarning, "_shows_once", False):
        return
    shown: Set[Tuple[type, str]] = set()
    show = warnings.showwarning

    def show_once(
        message: Union[Warning, str],
        category: Type[Warning],
        filename: str,
        lineno: int,
        file: Optional[TextIO] = None,
        line: Optional[str] = None,
    ) -> None:
        key = (category, str(message))
        if key not in shown:
            shown.add(key)
            show(message, category, filename, lineno, file, line)

    show_once._shows_once = True  # type: ignore[attr-defined]
    warnings.showwarning = show_once
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def shows_progress() -> bool:
    """Progress bars only on a terminal: logs and pipes get the jobs' summary lines alone."""
    return sys.stderr.isatty() and sys.stdout.isatty()


@contextlib.contextmanager
def progress(
    description: str, total: Optional[int] = None, poll: Optional[Callable[[], int]] = None
) -> Iterator[Callable[[int], None]]:
    """A progress bar of events (count, rate, and percentage when ``total`` is known) on a terminal,
    nothing elsewhere. Yields ``advance(n)``; with ``poll`` (a function returning the count so far,
    e.g. a Spark accumulator's value) a thread refreshes the bar twice a second as well."""
    if not shows_progress():
        yield lambda n: None
        return
    from tqdm import tqdm

    bar: Any = tqdm(total=total, desc=description, unit=" events", unit_scale=True, leave=False, file=sys.stderr)
    lock, stop = threading.Lock(), threading.Event()

    def advance(n: int) -> None:
        with lock:
            bar.update(n)

    def follow() -> None:
        while not stop.wait(0.5):
            assert poll is not None
            seen = poll()
            with lock:
                bar.update(seen - bar.n)

    follower = threading.Thread(target=follow, daemon=True) if poll is not None else None
    if follower is not None:
        follower.start()
    try:
        yield advance
    finally:
        stop.set()
        if follower is not None:
            follower.join()
        if poll is not None:
            bar.update(poll() - bar.n)  # the count at the end
        bar.close()
