//! Load generator library.
