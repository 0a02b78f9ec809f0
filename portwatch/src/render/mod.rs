//! Views that read the engine's [`crate::engine::Model`]; they never change it.

pub mod batch;
pub mod fmt;
pub mod report;
