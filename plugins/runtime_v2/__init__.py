"""runtime_v2."""
