"""glsverify.report."""
