"""glsverify.spec."""
