//! Shared helpers for the integration tests: real processes, and the test machine that
//! the driver conformance tests run under every runtime.
pub mod echo;
pub mod netns;
pub mod process;
