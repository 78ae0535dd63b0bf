"""glsverify.models."""
