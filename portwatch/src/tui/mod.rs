//! `portwatch top`: the live TUI. `view` is the data one refresh shows,
//! `screen` builds it from the engine's model, `app` holds the state and
//! keys, `draw` the layout, `term` owns the terminal, `run` is the loop.

pub mod advice;
pub mod app;
pub mod draw;
pub mod run;
pub mod screen;
pub mod term;
pub mod view;
