"""glsverify.data."""
