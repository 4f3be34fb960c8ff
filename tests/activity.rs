//! Integration tests: activity (see docs/design.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
