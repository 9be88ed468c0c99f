"""The Developer Sandbox: conformance checks for Nudge REST middleware."""
