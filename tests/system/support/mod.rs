//! Support shared by the integration tests that run `zeroraft serve` processes. Each test file
//! uses part of it.
#![allow(dead_code)]

pub mod netns;
pub mod processes;
