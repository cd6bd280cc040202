"""Drift monitoring: River detectors (drift.py) and the route/model health they drive
(route_health.py). Pure: no Kafka; the worker's agents call HealthMonitor per decision and per
outcome and publish the alerts it returns (schemas/Alert.avsc)."""

from app.monitoring.drift import Alarm, DriftConfig, DriftMonitor, PHSpec, Signal
from app.monitoring.route_health import (
    ALERT_KINDS,
    HealthMonitor,
    ModelHealthConfig,
    ModelState,
    MonitorConfig,
    RouteHealthConfig,
    RouteState,
)

__all__ = [
    "ALERT_KINDS",
    "Alarm",
    "DriftConfig",
    "DriftMonitor",
    "HealthMonitor",
    "ModelHealthConfig",
    "ModelState",
    "MonitorConfig",
    "PHSpec",
    "RouteHealthConfig",
    "RouteState",
    "Signal",
]
