//! portwatch: find the service that exhausts ephemeral ports.
//!
//! Layout: `probe` is the only part that touches the kernel (aya, root);
//! `event` is what it produces; everything else is plain, testable Rust.

pub mod cli;
pub mod clock;
pub mod cmd;
pub mod engine;
pub mod errno;
pub mod event;
pub mod exporter;
pub mod filter;
pub mod input;
pub mod live;
pub mod output;
pub mod pipeline;
pub mod probe;
pub mod render;
pub mod system;
pub mod tracefile;
pub mod tui;
