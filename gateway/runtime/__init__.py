"""The gateway's processes on Kafka: the worker loop, its producer, state and metrics."""
