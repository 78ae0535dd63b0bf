"""Reports: PNG plots (matplotlib, headless) and a markdown summary for training runs and verifier
results. :func:`~glsverify.report.builder.write_report` is what ``glsverify report`` calls."""
