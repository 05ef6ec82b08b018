"""Models: the compiled physical prior, augmentation networks and their combination."""
from .hybrid import HamiltonianPrior, HybridModel, build_model
from .rollout import Rollout, RolloutOutput, SolverConfig
from .environments import MultiEnvModel, StackedNetworks, build_multi_env_model
from .nets import MLP, NETWORKS, ConvNet, ResNet, Scaled, build_network

__all__ = ["Rollout", "RolloutOutput", "SolverConfig", "NETWORKS", "HybridModel", "HamiltonianPrior", "build_model", "MLP", "ConvNet", "ResNet", "Scaled",
           "build_network", "MultiEnvModel", "StackedNetworks", "build_multi_env_model"]
