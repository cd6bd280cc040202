"""The model lifecycle: MLflow tracking and registry, production history export, retraining."""
