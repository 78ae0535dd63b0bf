"""glsverify.verify."""
