"""Load-client launchers that run inside an engine's client environment (standalone scripts)."""
