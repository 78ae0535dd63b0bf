"""glsverify.vnncomp."""
