"""VNN-LIB 1.0 reader (VNN-COMP dialect) and writer.

A VNN-LIB file declares inputs ``X_0..X_{n-1}`` and outputs ``Y_0..Y_{m-1}`` and asserts a
conjunction of formulas built from ``and``, ``or`` and linear comparisons; it describes the *unsafe*
set. We normalise it to disjunctive normal form: each DNF term is a conjunction of input bounds (which
tighten one input box, starting from [-inf, inf]) and output rows ``C @ y <= d``. Terms with identical
boxes share one :class:`Case`; polytopes keep file order. Terms whose box is empty are dropped (no
input satisfies them). An input left unbounded in a case is an error.

Accepted: ``declare-const`` of ``X_i``/``Y_j`` as ``Real`` (anywhere in the file, indices contiguous
from 0); ``assert`` over ``<=``, ``>=`` and ``=`` (a point bound, or two rows); ``and``/``or`` nested
freely (``(and)`` is true, ``(or)`` false); linear terms ``+``, ``-`` and ``*`` by a constant; comments;
decimal floats in any spelling (``.5``, ``1.``, ``+3``, ``5.8e-05``). ``check-sat``, ``get-model``,
``exit`` and ``set-logic`` are ignored. Strict ``<``/``>`` are refused rather than silently widened.
The DNF may have at most :data:`MAX_TERMS` terms.

Speed (tens of MB in about a second): lines that are exactly ``(declare-const X_i Real)`` or
``(assert (<= X_i c))`` -- the bulk of image benchmarks -- are cut out by one ``re.split`` and applied
with numpy, atoms ``(<= X_i c)`` inside larger formulas likewise; placeholder tokens keep their places,
so a misplaced one still fails. The rest is tokenised by one compiled regex. Any failure triggers a
second, plain parse of the original text that tracks positions, so every :class:`VnnlibError` names
the offending token's 1-based line and column (or the variable's declaration).
"""

from __future__ import annotations

import gzip
import itertools
import os
import zlib
from pathlib import Path

import numpy as np

from glsverify.errors import VnnlibError
from glsverify.io_utils import atomic_write_text
from glsverify.spec._dnf import MAX_TERMS, ParseFailure
from glsverify.spec._vnnlib_reader import ATOM_MARK, COMMENT, PLACEHOLDER, TOKEN, Reader
from glsverify.spec.property import InputBox, OutputPolytope, Property

__all__ = ["MAX_TERMS", "VnnlibError", "parse_vnnlib", "parse_vnnlib_text", "write_vnnlib"]

_INF = float("inf")


def parse_vnnlib(path: str | os.PathLike, *, n_inputs: int | None = None,
                 n_outputs: int | None = None) -> Property:
    """Parse a VNN-LIB file (``.gz`` files are decompressed) into a :class:`Property`.

    ``n_inputs``/``n_outputs``, when given (e.g. from the network), must match the declarations.
    """
    source = os.fspath(path)
    try:
        if source.endswith(".gz"):
            with gzip.open(source) as handle:
                raw = handle.read()
        else:
            raw = Path(source).read_bytes()
        text = raw.decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise VnnlibError(f"cannot read VNN-LIB file: {exc}", source) from None
    return parse_vnnlib_text(text, source=source, n_inputs=n_inputs, n_outputs=n_outputs)


def parse_vnnlib_text(text: str, source: str | None = None, *, n_inputs: int | None = None,
                      n_outputs: int | None = None) -> Property:
    """Parse VNN-LIB text; ``source`` only names it in error messages and in ``Property.source``."""
    try:
        prop = Reader(text, fast=PLACEHOLDER not in text and ATOM_MARK not in text).run()
    except ParseFailure:
        try:  # re-parse plainly: the reference, whose token indices map to positions in the text
            prop = Reader(text, fast=False).run()
        except ParseFailure as failure:
            raise _located(failure, text, source) from None
    for what, declared, expected in (("input", prop.n_inputs, n_inputs),
                                     ("output", prop.n_outputs, n_outputs)):
        if expected is not None and declared != expected:
            raise VnnlibError(f"declares {declared} {what} variables but the network has "
                              f"{expected}", source)
    return Property(prop.n_inputs, prop.n_outputs, prop.cases, source)


def _located(failure: ParseFailure, text: str, source: str | None) -> VnnlibError:
    if failure.at is None:
        return VnnlibError(failure.message, source)
    stripped = COMMENT.sub("", text)  # same lines and columns for every token
    match = next(itertools.islice(TOKEN.finditer(stripped), failure.at, None), None)
    pos = match.start() if match else len(stripped)
    line = stripped.count("\n", 0, pos) + 1
    return VnnlibError(failure.message, source, line, pos - stripped.rfind("\n", 0, pos))


# ---- writer --------------------------------------------------------------------------------------
def write_vnnlib(prop: Property, path: str | os.PathLike | None = None) -> str:
    """Render ``prop`` as VNN-LIB text (written atomically to ``path`` if given) and return it.

    Floats are written with ``repr`` so that ``parse_vnnlib_text(write_vnnlib(p))`` gives back the
    same arrays. A single case is written as one assert per bound; several cases as one top-level
    ``(or (and ...))`` with a term per (box, polytope). Cases must have distinct boxes.
    """
    lines = [f"(declare-const X_{i} Real)" for i in range(prop.n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(prop.n_outputs)]
    if len(prop.cases) == 1:
        case = prop.cases[0]
        lines += [f"(assert {atom})" for atom in _box_atoms(case.box)]
        if len(case.polytopes) == 1:
            lines += [f"(assert {atom})" for atom in _row_atoms(case.polytopes[0])]
        else:
            terms = [" ".join(_row_atoms(p)) for p in case.polytopes]
            lines += _disjunction(terms)
    else:
        terms = [" ".join(_box_atoms(case.box) + _row_atoms(poly))
                 for case in prop.cases for poly in case.polytopes]
        lines += _disjunction(terms)
    text = "\n".join(lines) + "\n"
    if path is not None:
        atomic_write_text(path, text)
    return text


def _disjunction(terms: list[str]) -> list[str]:
    return ["(assert (or"] + [f"    (and {t})" for t in terms] + ["))"]


def _num(value: float) -> str:
    value = float(value)
    if value != value or value in (_INF, -_INF):
        raise ValueError(f"cannot write the non-finite number {value} to VNN-LIB")
    return repr(value)


def _box_atoms(box: InputBox) -> list[str]:
    atoms = []
    for i, (lo, hi) in enumerate(zip(box.lower.tolist(), box.upper.tolist())):
        atoms += [f"(<= X_{i} {_num(hi)})", f"(>= X_{i} {_num(lo)})"]
    return atoms


def _row_atoms(poly: OutputPolytope) -> list[str]:
    atoms = []
    for row, rhs in zip(np.asarray(poly.C, dtype=np.float64), np.asarray(poly.d, np.float64)):
        nz = np.flatnonzero(row)
        coefs = row[nz].tolist()
        if len(nz) == 1 and coefs[0] in (1.0, -1.0):
            op, bound = ("<=", rhs) if coefs[0] == 1.0 else (">=", -rhs)
            atoms.append(f"({op} Y_{nz[0]} {_num(bound)})")
        elif len(nz) == 2 and rhs == 0.0 and sorted(coefs) == [-1.0, 1.0]:
            pos, neg = (nz[0], nz[1]) if coefs[0] == 1.0 else (nz[1], nz[0])
            atoms.append(f"(<= Y_{pos} Y_{neg})")
        else:
            nz = nz if len(nz) else np.array([0])
            terms = " ".join(f"(* {_num(row[j])} Y_{j})" for j in nz)
            atoms.append(f"(<= (+ {terms}) {_num(rhs)})")
    return atoms
