"""Breach incidents: notification clocks, duties by risk, and the record (DESIGN §8)."""
