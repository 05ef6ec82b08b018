"""Models: the compiled physical prior, augmentation networks and their combination."""
from .hybrid import HamiltonianPrior, HybridModel, build_model
from .nets import MLP, ConvNet, ResNet, Scaled, build_network

__all__ = ["HybridModel", "HamiltonianPrior", "build_model", "MLP", "ConvNet", "ResNet", "Scaled",
           "build_network"]
