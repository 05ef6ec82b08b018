"""The physml language: grammar (``physml.lark``), parser and checks → :class:`Spec`."""
from .build import library_names, library_path, load_spec, parse_spec

__all__ = ["load_spec", "parse_spec", "library_names", "library_path"]
