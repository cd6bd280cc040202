"""Policy evaluation on the simulator: the closed loop without Kafka (`authpilot evaluate-policy`).

prepare.py trains the model on a logged history; policies.py wraps the worker's own policy
functions as routers and retriers; loop.py replays payments through one policy in event-time
order; report.py turns runs into a table with confidence intervals and a plot.
"""
