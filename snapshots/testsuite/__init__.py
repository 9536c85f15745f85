"""testsuite."""
