"""Pure wire formats of Kith: vocabulary, documents, signatures and proofs. No I/O here."""
