"""Test-only helpers shared by the test files (images, tiny exports, subprocesses)."""
