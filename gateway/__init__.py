"""HCMC inter-agency exchange gateway: verify, minimise and route signed CloudEvents on Kafka."""

__version__ = "0.1.0"
