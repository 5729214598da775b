//! Unit tests of the risk checks.
