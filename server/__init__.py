"""The Kith node: configuration, CLI, storage, the aiohttp application and the social domain."""

__version__ = "0.1.0"
