//! `portwatch top`: the live TUI. `view` is the data one refresh shows,
//! `app` the state and keys, `draw` the layout.

pub mod app;
pub mod draw;
pub mod term;
pub mod view;
