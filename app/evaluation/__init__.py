"""Policy evaluation on the simulator: the closed loop without Kafka (`authpilot evaluate-policy`).

prepare.py trains the model on a logged history and warms the learning state; policies.py
makes routers of the worker's Dispatcher over that state in dicts; loop.py replays payments
through one router + retry policy in event-time order; run.py composes a whole evaluation from
the routing and retry registries; report.py turns runs into a table with confidence intervals
and a plot.
"""
