"""The assembly drill on the emulators: simulated citizens and commanders, a compressed clock,
and the report of what happened against the center's rules."""
