//! The audit log: what is recorded, what never is, reading it back.
