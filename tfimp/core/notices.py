"""Warnings that point at the user's line, however deep in tfimp they are raised.

A warning's ``stacklevel`` counts frames, and the same function is reached
directly, through ``tfimp.wrap``'s dispatch or through a runner; counting
by hand points at tfimp's own code on some of those paths. :func:`warn`
names the first caller outside the ``tfimp`` package instead.
"""

from __future__ import annotations

import sys
import warnings


def warn(message: str, category: type = UserWarning) -> None:
    """``warnings.warn(message)`` attributed to the innermost caller outside tfimp."""
    frame, level = sys._getframe(1), 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] == "tfimp":
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


def say(message: str) -> None:
    """A message that must reach the user whatever the verbosity (a damaged file redone): standard error."""
    print(message, file=sys.stderr, flush=True)
