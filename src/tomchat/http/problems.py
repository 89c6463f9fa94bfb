"""Errors on REST: RFC 9457 problems, from the same table as the Socket.IO acks
(``tomchat.wire.errors``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from litestar.plugins.problem_details import ProblemDetailsException

from tomchat.wire.errors import ERRORS, answer

log = logging.getLogger("tomchat")


def problem(exc: Exception) -> ProblemDetailsException:
    said = answer(exc)
    if said.log == "traceback":
        log.error("unhandled error", exc_info=exc)
    elif said.log == "line":
        log.error("%s", exc)
    return ProblemDetailsException(
        detail=said.message,
        status_code=said.code.status,
        title=said.code.title,
        extra=said.extra or None,
        headers=said.headers or None,
    )


# Litestar picks the handler of the nearest class in an exception's MRO: every class of the
# table, a full disk (an OSError) and, last, anything else. Litestar's own HTTP exceptions
# keep the problem details plugin's handler (they are more specific than Exception).
PROBLEMS: Mapping[type[Exception], Callable[[Exception], ProblemDetailsException]] = {
    **{cls: problem for cls in ERRORS},
    OSError: problem,
    Exception: problem,
}
