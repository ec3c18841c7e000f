"""Reports for the center: the drill report and the half-year assessment of every team."""
