"""glsverify: certified training with Gaussian Loss Smoothing, and a sound verifier.

The package is organised around one seam: an imported :class:`~glsverify.graph.Graph`, an input/output
specification, and pluggable bound relaxations (``glsverify.bounds``). Training and verification are
clients of that seam.
"""

__version__ = "0.1.0"
