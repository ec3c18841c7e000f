"""The center's directory: teams, their members and phones, and the duty supervisors' roster."""
