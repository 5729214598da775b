//! Transport edge (being written).
