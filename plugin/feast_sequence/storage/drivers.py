"""Running a sans-IO operation: the one sync and the one async driver of every store operation.

An operation is a generator that yields the I/O it needs (a round of Redis commands, a script load,
a wait), receives the result, and returns its own result. Errors of the I/O are thrown into the
operation at the ``yield`` that asked for it, so it can retry, count or re-raise them like its own.
The logic is written once; only these two loops differ between sync and async code.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generator, Generic, Optional, TypeVar

Step = TypeVar("Step")
Result = TypeVar("Result")

Operation = Generator[Step, Any, Result]


class _Cursor(Generic[Step, Result]):
    """Where an operation stands: the step it waits on, or (``done``) its result."""

    def __init__(self, operation: Operation[Step, Result]):
        self._operation = operation
        self.done = False
        self.step: Step
        self.result: Result
        self.resume(None, None)

    def resume(self, reply: Any, error: Optional[Exception]) -> None:
        """Hand the operation the reply of its step, or throw the error its step raised."""
        try:
            if error is None:
                self.step = self._operation.send(reply)
            else:
                self.step = self._operation.throw(error)
        except StopIteration as stop:
            self.done, self.result = True, stop.value


def drive(operation: Operation[Step, Result], run: Callable[[Step], Any]) -> Result:
    """Run ``operation``, doing each step it yields with the synchronous ``run``."""
    cursor = _Cursor(operation)
    while not cursor.done:
        try:
            reply = run(cursor.step)
        except Exception as error:
            cursor.resume(None, error)
            continue
        cursor.resume(reply, None)
    return cursor.result


async def drive_async(operation: Operation[Step, Result], run: Callable[[Step], Awaitable[Any]]) -> Result:
    """Run ``operation``, doing each step it yields with the asynchronous ``run``."""
    cursor = _Cursor(operation)
    while not cursor.done:
        try:
            reply = await run(cursor.step)
        except Exception as error:
            cursor.resume(None, error)
            continue
        cursor.resume(reply, None)
    return cursor.result
