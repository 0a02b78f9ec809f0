pub mod export;
pub mod record;
pub mod replay;
pub mod report;
pub mod top;
pub mod top_batch;
pub mod trace;
