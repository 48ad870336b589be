//! Pure helpers shared by the runtime adapters (no I/O here).
