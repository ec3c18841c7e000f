"""Yihu gateway: the service (wiring, config, storage, directory, orders, feedback, escalation, hotline tracking, the AMI link)."""
__version__ = "0.1.0"
