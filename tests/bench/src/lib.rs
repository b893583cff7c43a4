//! The benchmarks are the binaries in `src/bin`; this crate has no library code.
