"""The mock agency world: people, the four agencies' connectors, life events, the runner."""
