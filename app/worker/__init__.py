"""The Faust worker: app wiring, web endpoints, and the agents."""
