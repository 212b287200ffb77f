"""Data side of the runtime: datasets, transforms, samplers and loaders."""
from .base_dataset import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from .manager import DataManager, DatasetWrapper, build_data_loader
from .samplers import build_sampler
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = [
    "DATASET_REGISTRY", "DatasetBase", "Datum", "build_dataset", "DataManager",
    "DatasetWrapper", "build_data_loader", "build_sampler", "INTERPOLATION_MODES",
    "build_transform",
]
