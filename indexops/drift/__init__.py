"""Drift: the statistical tests, the drift report (JSON and HTML) and the redaction of what it shows."""
