//! Policy stub (being written).
