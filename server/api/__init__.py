"""HTTP endpoints: discovery documents, ActivityPub GETs, client APIs, health."""
