"""Training scripts (``python -m mmsafe.train.<name>``). They live apart from the plugin folders because registry
discovery imports every module there, and a training script's imports (scikit-learn, datasets) must not load
with a judge."""
