"""MLflow: runs, params, metrics, artifacts, dataset inputs and the model registry."""
