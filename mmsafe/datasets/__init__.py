"""Datasets: each loader yields ``Sample`` objects; register with ``@datasets.register(name)``. Format detection of
a bare path and the Hub downloads are re-exported here for the CLI and user code."""

from mmsafe.datasets._hub import HUB, HubUnavailable, download
from mmsafe.datasets._scenario import check_scenarios
from mmsafe.datasets.base import Dataset, DatasetError, datasets
from mmsafe.datasets.detect import detect, resolve

__all__ = ["HUB", "Dataset", "DatasetError", "HubUnavailable", "check_scenarios", "datasets", "detect", "download",
           "resolve"]
