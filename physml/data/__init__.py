"""Datasets: the in-memory :class:`Dataset`, the HDF5 format, user data, and batches."""
from .batches import Batch, Trajectories, Windows, split_off_validation
from .dataset import DataError, Dataset
from .io import list_arrays, load_dataset, save_dataset

__all__ = ["Batch", "Trajectories", "Windows", "split_off_validation", "Dataset", "DataError",
           "list_arrays", "load_dataset", "save_dataset"]
