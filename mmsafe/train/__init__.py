"""Training scripts (run as ``python -m mmsafe.train.NAME``); kept out of the plugin folders that discovery imports."""
