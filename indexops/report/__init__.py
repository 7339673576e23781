"""Human-readable summaries (markdown artifacts, reports)."""
