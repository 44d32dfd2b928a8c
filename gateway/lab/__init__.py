"""An exchange on one machine: the embedded broker, the demo, the benchmark and its tools.

The only wing of the gateway that imports the mock agencies (:mod:`connectors.mock`).
"""
