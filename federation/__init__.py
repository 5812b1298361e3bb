"""Server-to-server transport: inbox intake, verification, delivery, signed remote fetches."""
