"""glsverify.train."""
