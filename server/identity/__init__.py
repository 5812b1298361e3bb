"""Local identities: accounts, their keys, passwords and access tokens."""
