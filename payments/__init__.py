"""Money: ledger, wallets, payment requests, settlement between nodes. Knows nothing of HTTP."""
