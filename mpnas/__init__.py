"""mpnas: multi-path neural architecture search for on-device multi-domain image classification."""

__version__ = "0.1.0"
