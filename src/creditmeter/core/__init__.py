"""The pure domain of creditmeter: no I/O, no database, no HTTP."""
