"""The VNN-LIB 1.0 tokenizer and DNF normaliser behind :mod:`glsverify.spec.vnnlib`.

Kept apart from the public module so that each stays small. :class:`Reader` raises
:class:`ParseFailure` carrying a token index; the public module turns it into a :class:`VnnlibError`
with line and column.
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from glsverify.spec._dnf import (MAX_TERMS, ParseFailure, combine, conjoin, expected_close, polytope,
                                  scale, tighten)
from glsverify.spec.property import Case, InputBox, Property

_MAX_DEPTH = 200  # nesting of and/or, and of arithmetic; deeper is refused rather than overflowing
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(_NUM + r"\Z")
_VAR_RE = re.compile(r"([XY])_(0|[1-9]\d*)\Z")
TOKEN = re.compile(r"[()]|[^\s()]+")
COMMENT = re.compile(r";[^\n]*")
_FAST_LINE = re.compile(
    r"^[ \t]*\((?:declare-const[ \t]+([XY])_(0|[1-9]\d*)[ \t]+Real[ \t]*\)"
    r"|[ \t]*assert[ \t]*\([ \t]*(<=|>=)[ \t]+X_(0|[1-9]\d*)[ \t]+(" + _NUM + r")[ \t]*\)[ \t]*\))"
    r"[ \t\r]*(?:;[^\n]*)?$",
    re.M,
)
_FAST_ATOM = re.compile(r"\(\s*(<=|>=)\s+X_(0|[1-9]\d*)\s+(" + _NUM + r")\s*\)")
PLACEHOLDER = "\x00"  # stands for one line handled by the fast path
ATOM_MARK = "\x01"  # stands for one (<= X_i c) atom handled by the fast path
_CMP = ("<=", ">=", "=")
_PARENS = ("(", ")", None)
_IGNORED = {"check-sat": 0, "get-model": 0, "exit": 0, "set-logic": 1}
_INF = float("inf")


class Reader:
    """One parse of one text. A DNF is a list of terms ``[fast_atoms, x_atoms, y_rows]``: fast atoms
    are numbers of ``(<= X_i c)`` atoms cut out by the fast path (see ``self.fast_atoms``), an x atom is
    ``(index, lower, upper)`` and a y row ``(((j, coef), ...), d)`` meaning ``sum coef*Y_j <= d``."""

    def __init__(self, text: str, fast: bool):
        self.fast = fast
        self.decl: dict[str, dict[int, int | None]] = {"X": {}, "Y": {}}
        self.first_use: dict[tuple[str, int], int] = {}
        self.base: list = [[], [], []]  # the conjunction of all single-term asserts
        self.factors: list[list] = []  # the DNFs of asserts with several (or zero) terms
        self.bulk_x = None
        self.form = 0  # token index of the command being read, for "never closed" errors
        self.fast_atoms = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))  # index, lower, upper
        self.n_atoms = 0  # fast atoms consumed so far
        text = COMMENT.sub("", text) if not fast else self._take_fast_lines(_FAST_LINE.split(text))
        self.toks: list = TOKEN.findall(text) + [None] * 8
        self.n_toks = len(self.toks) - 8

    def _take_fast_lines(self, parts: list) -> str:
        """Apply the declarations and bounds of the fast lines, mark the fast atoms, and return
        the remaining text (comments removed) for the tokenizer."""
        for kind, idx in zip(parts[1::6], parts[2::6]):
            if kind is not None:
                table = self.decl[kind]
                if int(idx) in table:
                    raise ParseFailure("duplicate declaration", None)
                table[int(idx)] = None
        ops = [op for op in parts[3::6] if op is not None]
        if ops:
            index = np.array([int(i) for i in parts[4::6] if i is not None], dtype=np.int64)
            value = np.array([float(v) for v in parts[5::6] if v is not None], dtype=np.float64)
            if not np.all(np.isfinite(value)):
                raise ParseFailure("number out of range", None)
            self.bulk_x = (index, np.array([op == "<=" for op in ops]), value)
        pieces = _FAST_ATOM.split(COMMENT.sub("", PLACEHOLDER.join(parts[0::6])))
        value = np.array(list(map(float, pieces[3::4])), dtype=np.float64)
        if not np.all(np.isfinite(value)):
            raise ParseFailure("number out of range", None)
        is_upper = np.array(pieces[1::4]) == "<="
        self.fast_atoms = (np.array(list(map(int, pieces[2::4])), dtype=np.int64),
                           np.where(is_upper, -_INF, value), np.where(is_upper, value, _INF))
        return f" {ATOM_MARK} ".join(pieces[0::4])  # spaces: "(assert(<= X_0 1))" has none

    # ---- top level -------------------------------------------------------------------------------
    def run(self) -> Property:
        toks, i = self.toks, 0
        while i < self.n_toks:
            tok = toks[i]
            if tok == PLACEHOLDER:
                i += 1
                continue
            if tok != "(":
                raise ParseFailure("unbalanced parentheses: unexpected ')'" if tok == ")" else
                                   f"expected '(' to start a command, found {tok!r}", i)
            self.form = i
            head = toks[i + 1]
            if head == "declare-const":
                i = self._declare(i)
            elif head == "assert":
                dnf, j = self._formula(i + 2, i)
                if toks[j] != ")":
                    raise ParseFailure(expected_close(toks[j]), j if toks[j] else i)
                if len(dnf) == 1:
                    for mine, theirs in zip(self.base, dnf[0]):
                        mine.extend(theirs)
                else:
                    self.factors.append(dnf)
                i = j + 1
            elif head in _IGNORED:
                j = i + 2 + _IGNORED[head]
                if _IGNORED[head] and toks[i + 2] in (*_PARENS, ATOM_MARK, PLACEHOLDER):
                    raise ParseFailure(f"{head} needs a symbol", i + 2)
                if toks[j] != ")":
                    raise ParseFailure(expected_close(toks[j]), j if toks[j] else i)
                i = j + 1
            elif head is None:
                raise ParseFailure("unbalanced parentheses: this '(' is never closed", i)
            elif head in _PARENS:
                raise ParseFailure(f"expected a command name, found {head!r}", i + 1)
            else:
                raise ParseFailure(f"unsupported command {head!r}", i + 1)
        return self._build()

    def _declare(self, i: int) -> int:
        toks = self.toks
        name, sort, close = toks[i + 2], toks[i + 3], toks[i + 4]
        if name in _PARENS or sort in _PARENS:
            raise ParseFailure("malformed declaration: expected (declare-const NAME Real)", i)
        match = _VAR_RE.match(name)
        if not match:
            raise ParseFailure(f"cannot declare {name!r}: variables must be named X_<i> or Y_<j>",
                               i + 2)
        if sort != "Real":
            raise ParseFailure(f"unsupported sort {sort!r} (only Real)", i + 3)
        if close != ")":
            raise ParseFailure(expected_close(close), i + 4 if close else i)
        table, index = self.decl[match.group(1)], int(match.group(2))
        if index in table:
            raise ParseFailure(f"duplicate declaration of {name}", i + 2)
        table[index] = i + 2
        return i + 5

    # ---- formulas --------------------------------------------------------------------------------
    def _formula(self, i: int, form: int) -> tuple[list, int]:
        """DNF of the formula starting at token ``i``; returns it and the index after it."""
        toks, stack = self.toks, []  # frames: [connective, index of '(', DNF so far]
        while True:
            tok = toks[i]
            if tok == ATOM_MARK:
                k = self.n_atoms
                if stack and stack[-1][0] == "and" and len(stack[-1][2]) == 1:
                    j = i + 1
                    while toks[j] == ATOM_MARK:  # a run of atoms in one conjunction, taken at once
                        j += 1
                    stack[-1][2][0][0].extend(range(k, k + j - i))
                    self.n_atoms += j - i
                    i = j
                    continue
                self.n_atoms += 1
                i += 1
                result = [[[k], [], []]]
            elif tok == "(":
                head = toks[i + 1]
                if head == "and" or head == "or":
                    if len(stack) >= _MAX_DEPTH:
                        raise ParseFailure("formula nested too deeply", i)
                    stack.append([head, i, [[[], [], []]] if head == "and" else []])
                    i += 2
                    continue
                if head in _CMP:
                    result, i = self._atom(i)
                elif head in ("<", ">"):
                    raise ParseFailure(f"unsupported operator {head!r} (strict comparison; "
                                       "use <= or >=)", i + 1)
                elif head is None:
                    raise ParseFailure("unbalanced parentheses: this '(' is never closed", form)
                else:
                    raise ParseFailure(f"unsupported operator {head!r} in a formula", i + 1)
            elif tok == ")" and stack:
                result = stack.pop()[2]
                i += 1
            elif tok is None:
                raise ParseFailure("unbalanced parentheses: this '(' is never closed", form)
            else:
                raise ParseFailure(f"expected a formula, found {tok!r}", i)
            if not stack:
                return result, i
            frame = stack[-1]
            acc = frame[2]
            if len(result) == 1 and len(acc) == 1 and frame[0] == "and":
                for mine, theirs in zip(acc[0], result[0]):
                    mine.extend(theirs)
            elif frame[0] == "or":
                frame[2].extend(result)
                if len(frame[2]) > MAX_TERMS:
                    raise ParseFailure(f"disjunction has more than {MAX_TERMS} terms", frame[1])
            else:
                frame[2] = conjoin(frame[2], result, frame[1])

    def _atom(self, i: int) -> tuple[list, int]:
        toks = self.toks
        op = toks[i + 1]
        if toks[i + 4] == ")" and toks[i + 2] not in _PARENS and toks[i + 3] not in _PARENS:
            simple = self._simple_atom(op, i)
            if simple is not None:
                return simple, i + 5
            lhs, rhs, end = self._leaf(i + 2), self._leaf(i + 3), i + 5
        else:
            lhs, j = self._expr(i + 2, 0)
            rhs, j = self._expr(j, 0)
            if toks[j] != ")":
                raise ParseFailure(expected_close(toks[j]), j if toks[j] else self.form)
            end = j + 1
        # lhs - rhs <= 0 for '<=', rhs - lhs <= 0 for '>='
        xs, ys, const = combine(lhs, rhs, -1.0) if op != ">=" else combine(rhs, lhs, -1.0)
        if xs and ys:
            raise ParseFailure("a comparison mixes input (X) and output (Y) variables", i)
        if not xs and not ys:
            raise ParseFailure("a comparison without variables", i)
        if ys:
            row = (tuple(ys.items()), 0.0 - const)
            rows = [row] if op != "=" else [row, (tuple((j, -c) for j, c in ys.items()), const)]
            return [[[], [], rows]], end
        if len(xs) > 1:
            raise ParseFailure("a comparison between several input variables "
                               "(only boxes are supported)", i)
        (index, coef), = xs.items()
        if coef == 0.0:
            raise ParseFailure("an input variable with coefficient 0", i)
        bound = (0.0 - const) / coef
        if op == "=":
            return [[[], [(index, bound, bound)], []]], end
        upper = coef > 0  # coef*x <= -const
        return [[[], [(index, -_INF, bound) if upper else (index, bound, _INF)], []]], end

    def _simple_atom(self, op: str, i: int) -> list | None:
        """The DNF of ``(op a b)`` with a variable and a number, or two distinct outputs; None for
        anything else (the general path then handles it, errors included)."""
        a, b = self.toks[i + 2], self.toks[i + 3]
        ma, mb = _VAR_RE.match(a), _VAR_RE.match(b)
        if ma is not None and mb is not None:
            if ma.group(1) != "Y" or mb.group(1) != "Y" or a == b:
                return None
            self._use(ma, i + 2)
            self._use(mb, i + 3)
            ja, jb = int(ma.group(2)), int(mb.group(2))
            below, above = (((ja, 1.0), (jb, -1.0)), 0.0), (((jb, 1.0), (ja, -1.0)), 0.0)
            return [[[], [], [below] if op == "<=" else [above] if op == ">=" else [below, above]]]
        var, num = (ma, b) if ma is not None else (mb, a)
        if var is None or not _NUM_RE.match(num):
            return None
        value = float(num)
        if value in (_INF, -_INF):
            return None
        if ma is None and op != "=":
            op = "<=" if op == ">=" else ">="  # c <= v  is  v >= c
        self._use(var, i + 2 if ma is not None else i + 3)
        index = int(var.group(2))
        if var.group(1) == "X":
            bounds = (-_INF, value) if op == "<=" else (value, _INF) if op == ">=" else (value, value)
            return [[[], [(index, *bounds)], []]]
        below, above = (((index, 1.0),), value), (((index, -1.0),), -value)
        return [[[], [], [below] if op == "<=" else [above] if op == ">=" else [below, above]]]

    def _use(self, match: re.Match, j: int) -> None:
        if not self.fast:
            self.first_use.setdefault((match.group(1), int(match.group(2))), j)

    def _leaf(self, j: int) -> tuple[dict, dict, float]:
        """A number or a variable, as a linear expression ``(x coefs, y coefs, constant)``."""
        tok = self.toks[j]
        match = _VAR_RE.match(tok)
        if match:
            kind, index = match.group(1), int(match.group(2))
            self._use(match, j)
            return ({index: 1.0}, {}, 0.0) if kind == "X" else ({}, {index: 1.0}, 0.0)
        if _NUM_RE.match(tok):
            value = float(tok)
            if value in (_INF, -_INF):
                raise ParseFailure(f"number out of range: {tok}", j)
            return {}, {}, value
        if tok[0].isdigit() or tok[0] in "+-.":
            raise ParseFailure(f"bad number {tok!r}", j)
        raise ParseFailure(f"unknown symbol {tok!r}", j)

    def _expr(self, j: int, depth: int) -> tuple[tuple[dict, dict, float], int]:
        toks = self.toks
        tok = toks[j]
        if tok is None:
            raise ParseFailure("unbalanced parentheses: this '(' is never closed", self.form)
        if tok == ")":
            raise ParseFailure("missing operand", j)
        if tok != "(":
            return self._leaf(j), j + 1
        if depth >= _MAX_DEPTH:
            raise ParseFailure("expression nested too deeply", j)
        op, k, args = toks[j + 1], j + 2, []
        if op not in ("+", "-", "*"):
            raise ParseFailure(f"unsupported operator {op!r} in an arithmetic term", j + 1)
        while toks[k] != ")":
            if toks[k] is None:
                raise ParseFailure("unbalanced parentheses: this '(' is never closed", j)
            arg, k = self._expr(k, depth + 1)
            args.append(arg)
        if not args:
            raise ParseFailure(f"operator {op!r} needs operands", j + 1)
        if op == "-" and len(args) == 1:
            return combine(({}, {}, 0.0), args[0], -1.0), k + 1
        if op in "+-":
            total = args[0]
            for arg in args[1:]:
                total = combine(total, arg, 1.0 if op == "+" else -1.0)
            return total, k + 1
        product = ({}, {}, 1.0)
        for arg in args:
            if (product[0] or product[1]) and (arg[0] or arg[1]):
                raise ParseFailure("a product of variables is not linear", j)
            product = scale(arg, product[2]) if not (product[0] or product[1]) else \
                scale(product, arg[2])
        return product, k + 1

    # ---- assembly --------------------------------------------------------------------------------
    def _build(self) -> Property:
        if self.n_atoms != len(self.fast_atoms[0]):  # a marked atom in a place no atom may be
            raise ParseFailure("misplaced comparison", None)
        n_in, n_out = self._check_declarations()
        lower, upper = np.full(n_in, -_INF), np.full(n_in, _INF)
        if self.bulk_x is not None:
            index, is_upper, value = self.bulk_x
            if index.max() >= n_in:
                raise ParseFailure("undeclared input variable", None)
            np.minimum.at(upper, index[is_upper], value[is_upper])
            np.maximum.at(lower, index[~is_upper], value[~is_upper])
        self._tighten(lower, upper, self.base[0], self.base[1])
        n_terms = 1
        for factor in self.factors:
            n_terms *= len(factor)
            if n_terms > MAX_TERMS:
                raise ParseFailure(f"the asserts expand to more than {MAX_TERMS} DNF terms", None)
        groups: dict[bytes, tuple[InputBox, list]] = {}
        for combo in itertools.product(*self.factors):
            ks = [k for term in combo for k in term[0]]
            xs = [a for term in combo for a in term[1]]
            lo, hi = (lower, upper) if not (xs or ks) else (lower.copy(), upper.copy())
            self._tighten(lo, hi, ks, xs)
            if np.any(lo > hi):
                continue  # an empty box: this term can never be satisfied
            key = lo.tobytes() + hi.tobytes()
            if key not in groups:
                self._check_bounded(lo, hi)
                groups[key] = (InputBox(lo, hi), [])
            rows = self.base[2] + [r for term in combo for r in term[2]]
            groups[key][1].append(polytope(rows, n_out))
        cases = tuple(Case(box, tuple(polys)) for box, polys in groups.values())
        return Property(n_in, n_out, cases)

    def _check_declarations(self) -> tuple[int, int]:
        counts = []
        for kind, what in (("X", "input"), ("Y", "output")):
            table = self.decl[kind]
            if not table:
                raise ParseFailure(f"no {what} variables declared (expected {kind}_0, {kind}_1, ...)",
                                   None)
            n = max(table) + 1
            if len(table) != n:
                missing = min(set(range(n)) - set(table))
                raise ParseFailure(f"{kind}_{missing} is not declared but {kind}_{n - 1} is "
                                   f"(variable indices must be contiguous from 0)", table[n - 1])
            counts.append(n)
        undeclared = [(j, k, i) for (k, i), j in self.first_use.items() if i >= counts[k == "Y"]]
        if undeclared:
            j, kind, index = min(undeclared)
            raise ParseFailure(f"undeclared variable {kind}_{index}", j)
        return counts[0], counts[1]

    def _check_bounded(self, lo: np.ndarray, hi: np.ndarray) -> None:
        unbounded = np.flatnonzero(np.isinf(lo) | np.isinf(hi))
        if unbounded.size:
            k = int(unbounded[0])
            side = "lower" if np.isinf(lo[k]) else "upper"
            raise ParseFailure(f"input X_{k} has no {side} bound (verification needs a finite "
                               "input box)", self.decl["X"].get(k))

    def _tighten(self, lower: np.ndarray, upper: np.ndarray, fast: list, atoms: list) -> None:
        """Intersect the box with fast atoms (by number) and x atoms ``(index, lower, upper)``."""
        if fast:
            index, lo, hi = (a[fast] for a in self.fast_atoms)
            if index.max() >= len(lower):
                raise ParseFailure("undeclared input variable", None)
            np.maximum.at(lower, index, lo)
            np.minimum.at(upper, index, hi)
        tighten(lower, upper, atoms)

