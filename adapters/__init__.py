"""What dispatch software and engineers talk to: the HTTP endpoints (health, metrics, REST API),
webhooks, the event stream and the status board."""
