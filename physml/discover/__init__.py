"""Discovering missing physics: from a trained augmentation F_a to equations.

- :func:`library_for` / :func:`default_library`: the candidate terms (SINDy library) a
  spec asks for, compiled at once by :func:`physml.symbolic.compile_terms`;
- :func:`stlsq`, :func:`bootstrap`: sparse regression with named terms, inclusion
  probabilities and coefficient intervals;
- :func:`discover`: F_a sampled on training states, fitted equation by equation;
- :func:`absorb`: a new spec whose prior holds the discovered terms with learnable
  coefficients;
- :mod:`.identifiability`: can a spec's learned parameters be told apart from its data
  (before training), and how far can the augmentation imitate them;
- :mod:`.uncertainty`: intervals on the identified parameters (Laplace, bootstrap).

Reading run directories and retraining (``physml discover RUN --absorb --refit``) is the
experiment layer's part (:func:`physml.experiment.discover`).
"""
from .absorb import REFIT_METHODS, Absorbed, absorb, chosen_terms
from .discovery import (THRESHOLD, Discovery, EnvironmentDiscovery, EquationFit, Term, discover,
                        discover_environments)
from .library import DEFAULT_DEGREE, Library, default_library, library_for, monomials
from .regression import ENGINES, SparseFit, bootstrap, stlsq

__all__ = ["discover", "discover_environments", "EnvironmentDiscovery", "Discovery",
           "EquationFit", "Term", "THRESHOLD", "Library",
           "library_for", "default_library", "monomials", "DEFAULT_DEGREE", "stlsq",
           "bootstrap", "SparseFit", "ENGINES", "absorb", "Absorbed", "chosen_terms",
           "REFIT_METHODS"]
