//! Integration tests: the built binary on real files in temporary data
//! directories, with real processes for locking and concurrency.

mod backend;
mod bad_input;
mod common;
mod concurrency;
mod crash;
mod daily;
mod disk;
mod durability;
mod faults;
mod history;
mod hostile;
mod late_writes;
mod linked;
mod lock;
mod properties;
mod prune;
mod reflink;
mod reset;
mod restore;
mod search;
mod show;
mod status;
mod verify;
