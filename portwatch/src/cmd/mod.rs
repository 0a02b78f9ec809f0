pub mod export;
pub mod record;
pub mod top;
pub mod top_batch;
pub mod trace;
