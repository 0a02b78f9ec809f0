pub mod export;
pub mod record;
pub mod trace;
