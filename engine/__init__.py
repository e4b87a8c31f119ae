"""The engine: specs, the store, the loop, mutators, evaluators and workers. No Textual here."""
