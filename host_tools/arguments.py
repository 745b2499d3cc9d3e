"""Argument types shared by the host tools' command lines: numbers that are refused, with the value named,
when they are not finite or not in range (argparse prints the message and exits 2, no traceback)."""
from __future__ import annotations

import argparse
import math

LONGEST_S = 7 * 24 * 3600.0  # a week: beyond it a duration is a typo, not a plan


def _seconds(text: str, minimum: float, allow_equal: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    low_ok = value >= minimum if allow_equal else value > minimum
    if not (math.isfinite(value) and low_ok and value <= LONGEST_S):
        relation = ">=" if allow_equal else ">"
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds {relation} {minimum:g} and at most "
                                         f"{LONGEST_S:g} (a week)")
    return value


def positive_seconds(text: str) -> float:
    return _seconds(text, 0.0, allow_equal=False)


def seconds(text: str) -> float:
    """A duration that may be 0."""
    return _seconds(text, 0.0, allow_equal=True)


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value
