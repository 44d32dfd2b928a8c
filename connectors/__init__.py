"""Agency connectors: the agency client, its transports, and the mock agency systems."""
