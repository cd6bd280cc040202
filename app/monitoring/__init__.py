"""Monitoring: River drift detectors, the route and model health they drive, Prometheus metrics.

Pure except metrics.py: the worker's agents call HealthMonitor (health.py) per decision and per
outcome and publish the alerts it returns (schemas/Alert.avsc)."""

from app.monitoring.drift import Alarm, DriftConfig, DriftMonitor, PHSpec, Signal
from app.monitoring.health import ALERT_KINDS, HealthMonitor, MonitorConfig
from app.monitoring.model_health import ModelHealthConfig, ModelState
from app.monitoring.route_health import RouteHealthConfig, RouteState

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
