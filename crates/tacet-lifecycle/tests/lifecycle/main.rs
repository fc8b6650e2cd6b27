//! The lifecycle jobs on a real pipeline over local disk: erasure on a million events (`erasure.rs`), and
//! retention, offboarding, objection, export, rectification and compaction (`jobs.rs`).

#[path = "../fixture/mod.rs"]
mod fixture;

mod erasure;
mod jobs;
