"""One family of user-facing errors.

Everything a user can cause (a bad file, a bad option, an unsupported op) raises a subclass of
:class:`GlsverifyError`. The CLI turns these into exit code 2 and a single line on stderr; anything
else is an internal error (exit code 1).
"""

from __future__ import annotations


class GlsverifyError(Exception):
    """Base class of every error caused by user input."""


class InvalidModelError(GlsverifyError):
    """The file is not a readable, valid ONNX model (wrong format, truncated, unsafe external data)."""


class UnsupportedOpError(GlsverifyError):
    """The model uses operations that the bound engine does not support.

    ``nodes`` lists ``(op_type, node_name)`` pairs; all unsupported nodes are reported at once.
    """

    def __init__(self, nodes: list[tuple[str, str]], supported: list[str], detail: str = ""):
        self.nodes = nodes
        self.supported = supported
        listed = ", ".join(f"{op} (node '{name}')" for op, name in nodes)
        extra = f" {detail}" if detail else ""
        super().__init__(
            f"unsupported ONNX operation(s): {listed}.{extra} Supported: {', '.join(supported)}"
        )


class ShapeMismatchError(GlsverifyError):
    """Two shapes that must agree do not; the message names both."""

    def __init__(self, what: str, expected: tuple, got: tuple):
        self.expected = tuple(expected)
        self.got = tuple(got)
        super().__init__(f"{what}: expected shape {self.expected}, got {self.got}")


class VnnlibError(GlsverifyError):
    """A VNN-LIB file could not be parsed; the message names the file, line and column."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 column: int | None = None):
        self.path, self.line, self.column = path, line, column
        where = path or "<string>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class DatasetError(GlsverifyError):
    """A dataset is missing, malformed or fails its checksum."""


class ConfigError(GlsverifyError):
    """A configuration value or option is invalid."""
