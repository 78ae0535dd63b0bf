"""glsverify.attack."""
