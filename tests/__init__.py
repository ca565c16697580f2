"""Test package, so that shared fixture modules import as `tests.<module>`."""
