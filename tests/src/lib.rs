//! Shared helpers for the workspace-level tests (interop, end-to-end, fault, bad input).
pub use flatnet_lab as lab;
