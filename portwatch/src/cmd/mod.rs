pub mod top;
pub mod top_batch;
pub mod trace;
