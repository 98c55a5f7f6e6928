"""recoverlink: Alertmanager alerts in, owned and measured recoveries out."""

__version__ = "0.1.0"
