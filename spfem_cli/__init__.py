"""spfem: speech-preserving facial expression manipulation for videos."""

__version__ = "0.1.0"
