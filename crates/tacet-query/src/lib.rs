//! tacet-query
