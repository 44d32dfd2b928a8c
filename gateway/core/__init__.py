"""The decision, pure: the event profile, parsing and verification, policy, routing, stamp.

Nothing here does I/O: no Kafka, database, metrics, settings or sockets (import-linter holds it).
"""
