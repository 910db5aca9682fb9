"""Origin server (issue 3)."""
