//! Tests of `restore`.
