"""VNN-COMP result files and counterexamples.

A result file's first line is one of :data:`RESULTS`. A ``sat`` answer is followed by the witness in
the competition's form::

    sat
    ((X_0 0.5)
     (X_1 -0.25)
     (Y_0 1.0))

Values are written with ``repr`` (full float64 precision), so ``read_result(write_result(...))`` is
exact. The reader also takes the 2021 words ``holds``/``violated`` (as ``unsat``/``sat``), bare
counterexample files with no result line (as in the benchmarks' ``counterexamples/`` folders), any
layout of whitespace and newlines, ``;`` comments, and a missing final ``)`` of the outer list (one of
the benchmarks' validated witnesses is cut off there). Malformed files raise :class:`ResultFileError`
with the line and column of the offending token.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from glsverify.errors import VnnlibError
from glsverify.io_utils import atomic_write_text

__all__ = ["RESULTS", "ResultFileError", "format_counterexample", "parse_counterexample",
           "read_result", "write_result"]

RESULTS = ("sat", "unsat", "timeout", "unknown", "error")
_ALIASES = {"holds": "unsat", "violated": "sat"}
_TOKEN = re.compile(r"[()]|[^\s()]+")
_COMMENT = re.compile(r";[^\n]*")
_NAME = re.compile(r"([XY])_(0|[1-9]\d*)\Z")
_VALUE = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|infinity|nan)\Z", re.I)


class ResultFileError(VnnlibError):
    """A result or counterexample file is malformed (names the file, line and column)."""


def format_counterexample(x: np.ndarray, y: np.ndarray) -> str:
    """The ``((X_0 v) ... (Y_0 v) ...)`` block for flat ``x`` and ``y``, values written by ``repr``."""
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.asarray(x, np.float64).reshape(-1))]
    pairs += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.asarray(y, np.float64).reshape(-1))]
    if not pairs:
        raise ValueError("an empty counterexample")
    return "(" + "\n ".join(pairs) + ")\n"


def write_result(path: str | os.PathLike, result: str,
                 counterexample: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Write a VNN-COMP result file atomically; ``sat`` needs ``counterexample=(x, y)``, others none."""
    if result not in RESULTS:
        raise ValueError(f"result must be one of {', '.join(RESULTS)}; got {result!r}")
    if (result == "sat") != (counterexample is not None):
        raise ValueError("a counterexample goes with 'sat' and only with 'sat'")
    text = result + "\n"
    if counterexample is not None:
        x, y = counterexample
        text += format_counterexample(x, y)
    atomic_write_text(path, text)


def read_result(path: str | os.PathLike) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """``(result, x, y)`` from a result file; ``x``/``y`` are None unless a witness follows ``sat``
    (``y`` is also None when the witness lists only inputs)."""
    source = os.fspath(path)
    text = _read(source)
    tokens = _tokens(text)
    if not tokens or tokens[0][0] == "(":
        where = tokens[0][1] if tokens else None
        raise _error("expected a result (" + ", ".join(RESULTS) + ") on the first line", source, text,
                     where)
    word = tokens[0][0].lower()
    result = _ALIASES.get(word, word)
    if result not in RESULTS:
        raise _error(f"unknown result {tokens[0][0]!r} (expected one of {', '.join(RESULTS)})",
                     source, text, tokens[0][1])
    if len(tokens) == 1:
        return result, None, None
    if result != "sat":
        raise _error(f"unexpected content after {result!r}", source, text, tokens[1][1])
    x, y = _pairs(tokens[1:], source, text)
    return result, x, y


def parse_counterexample(text_or_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """``(x, y)`` from counterexample text or a file (with or without a leading ``sat`` line).

    A ``Path`` (or a string without parentheses) is read as a file; a string with parentheses is text.
    ``y`` is None when the witness lists no outputs.
    """
    if isinstance(text_or_path, os.PathLike) or "(" not in text_or_path:
        source: str | None = os.fspath(text_or_path)
        text = _read(source)
    else:
        source, text = None, text_or_path
    tokens = _tokens(text)
    if tokens and tokens[0][0] != "(":
        word = tokens[0][0].lower()
        if _ALIASES.get(word, word) != "sat":
            raise _error(f"expected a counterexample, found {tokens[0][0]!r}", source, text,
                         tokens[0][1])
        tokens = tokens[1:]
    return _pairs(tokens, source, text)


def _read(source: str) -> str:
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"cannot read result file: {exc}", source) from None


def _tokens(text: str) -> list[tuple[str, int]]:
    stripped = _COMMENT.sub(lambda m: " " * len(m.group()), text)  # keeps every position
    return [(m.group(), m.start()) for m in _TOKEN.finditer(stripped)]


def _error(message: str, source: str | None, text: str, pos: int | None) -> ResultFileError:
    if pos is None:
        return ResultFileError(message, source)
    line = text.count("\n", 0, pos) + 1
    return ResultFileError(message, source, line, pos - text.rfind("\n", 0, pos))


def _pairs(tokens: list[tuple[str, int]], source: str | None,
           text: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``( (NAME VALUE) ... )`` -- the outer parentheses may be missing."""
    if not tokens:
        raise _error("no counterexample values", source, text, None)
    opened: list[int] = []
    for tok, pos in tokens:
        if tok == "(":
            opened.append(pos)
        elif tok == ")":
            if not opened:
                raise _error("unbalanced parentheses: unexpected ')'", source, text, pos)
            opened.pop()
    outer = tokens[0][0] == "(" and len(tokens) > 1 and tokens[1][0] == "("
    if opened == [tokens[0][1]] and outer:
        tokens = tokens + [(")", len(text))]  # a truncated last line, seen in published witnesses
    elif opened:
        raise _error("unbalanced parentheses: this '(' is never closed", source, text, opened[-1])
    if outer:
        tokens = tokens[1:-1]
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    k = 0
    while k < len(tokens):
        chunk = tokens[k:k + 4]
        pos = chunk[0][1]
        if chunk[0][0] != "(":
            raise _error(f"expected '(' before a name, found {chunk[0][0]!r}", source, text, pos)
        if len(chunk) < 4:
            raise _error("unbalanced parentheses: this '(' is never closed", source, text, pos)
        (name, name_pos), (value, value_pos), (close, close_pos) = chunk[1:]
        match = _NAME.match(name)
        if not match:
            raise _error(f"expected X_<i> or Y_<j>, found {name!r}", source, text, name_pos)
        if not _VALUE.match(value):
            raise _error(f"bad number {value!r}", source, text, value_pos)
        if close != ")":
            raise _error(f"expected ')', found {close!r}", source, text, close_pos)
        table, index = values[match.group(1)], int(match.group(2))
        if index in table:
            raise _error(f"{name} is given twice", source, text, name_pos)
        table[index] = float(value)
        k += 4
    return _dense(values["X"], "X", source, True), _dense(values["Y"], "Y", source, False)


def _dense(table: dict[int, float], kind: str, source: str | None,
           required: bool) -> np.ndarray | None:
    if not table:
        if required:
            raise ResultFileError(f"the counterexample gives no {kind} values", source)
        return None
    n = max(table) + 1
    if len(table) != n:
        missing = min(set(range(n)) - set(table))
        raise ResultFileError(f"the counterexample lacks {kind}_{missing} (it gives {kind}_{n - 1})",
                              source)
    return np.array([table[i] for i in range(n)], dtype=np.float64)
