//! Tests of `prune`.
