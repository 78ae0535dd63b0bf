"""glsverify.bounds."""
