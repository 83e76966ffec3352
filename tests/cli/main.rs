//! Integration tests: the built binary on real files in temporary data
//! directories, with real processes for locking and concurrency.

mod common;
mod crash;
mod faults;
mod history;
mod lock;
mod reset;
mod status;
