"""Datasets: the in-memory :class:`Dataset`, the HDF5 format, user data, and batches."""
from .batches import Batch, Trajectories, split_off_validation
from .dataset import DataError, Dataset
from .io import load_dataset, save_dataset

__all__ = ["Batch", "Trajectories", "split_off_validation", "Dataset", "DataError",
           "load_dataset", "save_dataset"]
