//! End-to-end tests that cross components live in `tests/`; this crate has no code of its own.
