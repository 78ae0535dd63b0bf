"""ONNX in and out: :func:`import_onnx` gives a normalised :class:`~glsverify.graph.Graph`,
:func:`export_onnx` writes one back."""

from glsverify.onnx.export import export_onnx
from glsverify.onnx.importer import import_onnx, inspect_onnx

__all__ = ["import_onnx", "inspect_onnx", "export_onnx"]
