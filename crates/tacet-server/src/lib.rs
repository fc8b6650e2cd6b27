//! tacet-server
