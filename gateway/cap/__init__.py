"""CAP 1.2 intake: early-warning alerts become orders (or proposals a person confirms)."""
