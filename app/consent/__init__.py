"""Consent ledger: append-only events and their current-state projection (DESIGN §7)."""
