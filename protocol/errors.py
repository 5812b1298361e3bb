"""Errors raised by pure protocol code; each carries a reason a peer or client can read."""


class ProtocolError(ValueError):
    """Input that does not follow the wire format; the message says what is wrong."""


class InvalidResource(ProtocolError):
    """A WebFinger resource that is missing or malformed."""


class InvalidKey(ProtocolError):
    """A key encoding (PEM, multibase) that cannot be decoded."""


class JsonLdError(ProtocolError):
    """A JSON-LD document that cannot be processed offline."""
