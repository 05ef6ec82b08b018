"""Datasets: the in-memory :class:`Dataset`, the HDF5 format, user data, and the cache."""
from .cache import dataset_for, default_path, spec_key
from .dataset import DataError, Dataset
from .io import load_dataset, save_dataset

__all__ = ["Dataset", "DataError", "load_dataset", "save_dataset", "dataset_for",
           "default_path", "spec_key"]
