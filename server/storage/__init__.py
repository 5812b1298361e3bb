"""Storage: the engine, the server's tables, ids, and the migrations over every package's tables."""
