"""Everything held on one data subject: consents, export, erasure (DESIGN §7)."""
